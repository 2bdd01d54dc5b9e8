#!/usr/bin/env node
'use strict';
// Bulk validation without HTTP.
//
//   node validate.cjs [--profiles DIR]... [--declared ignore|warn|enforce] [--as-shipped] < input.ndjson > outcomes.ndjson
//
// Shortcuts over Medplum as shipped (definitions.cjs): R4's resource definitions are read without
// narratives (a cache in node_modules/.cache) and indexed when a resource of that type (or holding one)
// first comes; each profile's StructureDefinition is parsed once for the life of the process, not for
// every resource. --as-shipped takes none of them (slow: the reference the tests compare with).
//
// Each non-empty input line is {"resource": {...}, "profile": "canonical" | ["canonical", ...] (optional)}.
// Each writes one line: the OperationOutcome for that resource (always at least one issue; errors have
// severity "error"). Exit status: 0 when every line was processed (even if resources are invalid),
// 2 on bad usage or unloadable profiles.

const readline = require('node:readline');
const defs = require('./definitions.cjs');

function usage(message) {
  process.stderr.write(`validate.cjs: ${message}\n`);
  process.stderr.write('usage: node validate.cjs [--profiles DIR]... [--declared ignore|warn|enforce] [--as-shipped] < in.ndjson\n');
  process.exit(2);
}

function parseArgs(argv) {
  let declared = 'warn';
  let asShipped = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--profiles') {
      i++;
    } else if (arg.startsWith('--profiles=')) {
      // handled by profileDirsFromArgs
    } else if (arg === '--as-shipped') {
      asShipped = true;
    } else if (arg === '--declared') {
      declared = argv[++i];
    } else if (arg === '-h' || arg === '--help') {
      usage('help');
    } else {
      usage(`unknown argument ${arg}`);
    }
  }
  if (!['ignore', 'warn', 'enforce'].includes(declared)) {
    usage(`--declared must be ignore, warn or enforce, not ${declared}`);
  }
  return { declared, asShipped, profileDirs: defs.profileDirsFromArgs(argv) };
}

function main() {
  const { declared, asShipped, profileDirs } = parseArgs(process.argv.slice(2));
  const registry = new defs.ProfileRegistry();
  try {
    defs.loadCore(asShipped ? { trimmed: false } : { lazy: true });
    for (const dir of profileDirs) {
      registry.loadDirectory(dir);
    }
  } catch (err) {
    usage(err.message);
  }

  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let lineNumber = 0;
  rl.on('line', (line) => {
    lineNumber++;
    if (!line.trim()) {
      return;
    }
    let result;
    let request;
    try {
      request = JSON.parse(line);
    } catch (err) {
      result = defs.outcome([defs.issue('error', 'structure', `line ${lineNumber}: not valid JSON (${err.message})`)]);
    }
    if (!result) {
      if (!request || typeof request !== 'object' || !('resource' in request)) {
        result = defs.outcome([defs.issue('error', 'structure', `line ${lineNumber}: expected {"resource": ...}`)]);
      } else {
        let profiles = request.profile ?? [];
        if (!Array.isArray(profiles)) {
          profiles = [profiles];
        }
        if (profiles.some((p) => typeof p !== 'string')) {
          result = defs.outcome([defs.issue('error', 'structure', `line ${lineNumber}: "profile" must be a string`)]);
        } else {
          result = defs.validate(request.resource, registry, { profiles, declared, reparse: asShipped });
        }
      }
    }
    process.stdout.write(JSON.stringify(result) + '\n');
  });
}

main();
