#!/usr/bin/env node
'use strict';
// fhir-desens development and test FHIR R4 server.
//
// Medplum's FhirRouter over an in-memory repository, behind node:http. We add what a real server has and the
// engine leaves out: HTTP semantics (ETag, Location, Last-Modified, status codes, Prefer), validation of every
// write, $validate with our own profiles, a CapabilityStatement, paging links, atomic transactions (rollback),
// strict search parameters, and sequential version ids. See README.md for what it still does not do.
//
//   node server.cjs [--host 127.0.0.1] [--port 8103|0] [--profiles DIR]... [--public-url URL]
//                   [--max-body-bytes N] [--page-size N] [--declared-profiles ignore|enforce]
//                   [--log-requests] [--exit-on-stdin-close]
//
// Once listening it prints one JSON line to stdout: {"event":"listening","url":"http://127.0.0.1:PORT/fhir/R4",...}

const http = require('node:http');
const core = require('@medplum/core');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');
const defs = require('./definitions.cjs');
const pkg = require('./package.json');

const BASE_PATH = '/fhir/R4';
const FHIR_JSON = 'application/fhir+json; charset=utf-8';
const MAX_PAGE_SIZE = 1000;
const RESULT_PARAMETERS = new Set([
  '_count',
  '_offset',
  '_sort',
  '_total',
  '_summary',
  '_elements',
  '_format',
  '_pretty',
]);
const UNSUPPORTED_PARAMETERS = new Set(['_include', '_revinclude', '_contained', '_containedType', '_has', '_list', '_query', '_filter', '_text', '_content']);
const STATUS_TEXT = http.STATUS_CODES;

// ---------------------------------------------------------------------------------------------- options

function fail(message, code = 2) {
  process.stderr.write(`fhir-server: ${message}\n`);
  process.exit(code);
}

function parseArgs(argv) {
  const options = {
    host: '127.0.0.1',
    port: 8103,
    publicUrl: undefined,
    maxBodyBytes: 16 * 1024 * 1024,
    pageSize: 20,
    declaredProfiles: 'ignore',
    logRequests: false,
    exitOnStdinClose: false,
  };
  const value = (i, name) => {
    if (i + 1 >= argv.length) {
      fail(`${name} needs a value`);
    }
    return argv[i + 1];
  };
  const integer = (text, name, min) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) {
      fail(`${name} must be an integer >= ${min}, not ${text}`);
    }
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    switch (arg) {
      case '--host':
        options.host = value(i++, arg);
        break;
      case '--port':
        options.port = integer(value(i++, arg), arg, 0);
        if (options.port > 65535) {
          fail('--port must be at most 65535');
        }
        break;
      case '--profiles':
        i++; // read by defs.profileDirsFromArgs
        break;
      case '--public-url':
        options.publicUrl = value(i++, arg).replace(/\/+$/, '');
        break;
      case '--max-body-bytes':
        options.maxBodyBytes = integer(value(i++, arg), arg, 1);
        break;
      case '--page-size':
        options.pageSize = Math.min(integer(value(i++, arg), arg, 1), MAX_PAGE_SIZE);
        break;
      case '--declared-profiles':
        options.declaredProfiles = value(i++, arg);
        if (!['ignore', 'enforce'].includes(options.declaredProfiles)) {
          fail('--declared-profiles must be ignore or enforce');
        }
        break;
      case '--log-requests':
        options.logRequests = true;
        break;
      case '--exit-on-stdin-close':
        options.exitOnStdinClose = true;
        break;
      case '-h':
      case '--help':
        process.stdout.write(
          'usage: node server.cjs [--host H] [--port P (0 = any free port)] [--profiles DIR]... [--public-url URL]\n' +
            '       [--max-body-bytes N] [--page-size N] [--declared-profiles ignore|enforce] [--log-requests]\n' +
            '       [--exit-on-stdin-close]\n'
        );
        process.exit(0);
        break;
      default:
        if (!arg.startsWith('--profiles=')) {
          fail(`unknown argument ${arg}`);
        }
    }
  }
  options.profileDirs = defs.profileDirsFromArgs(argv);
  return options;
}

// ------------------------------------------------------------------------------------------- repository

const keyOf = (type, id) => `${type}/${id}`;

/**
 * MemoryRepository plus: validation of every stored version, sequential version ids ("1", "2", ...),
 * server-assigned meta.lastUpdated, 410 Gone after delete, a non-mutating history, and rollback of
 * transactions (MemoryRepository runs them without isolation or undo).
 *
 * Rollback keeps an undo log: the first write to a resource inside a transaction records what the
 * store held for it (current version, history length, deleted or not), and a failure puts back just
 * those. Every conditional create runs in a transaction, so copying the whole store instead (as this
 * server did) made each write cost O(store size): 10,000 imported resources spent most of their
 * server time copying maps.
 */
class ValidatingRepository extends MemoryRepository {
  constructor(validateForWrite) {
    super();
    this.validateForWrite = validateForWrite;
    this.deletedKeys = new Set();
    this.transactionDepth = 0;
    this.undoLog = undefined; // Map(key -> what the store held before the transaction) while in one
    this.searchIndex = new SearchIndex();
  }

  async createResource(resource, options) {
    const oo = this.validateForWrite(resource);
    if (defs.hasErrors(oo)) {
      throw new core.OperationOutcomeError(errorsFirst(oo));
    }
    const { resourceType, id, meta, ...rest } = resource; // MemoryRepository stores a deep copy of `copy`
    const finalId = id ?? this.generateId();
    const versions = this.history.get(resourceType)?.get(finalId)?.length ?? 0;
    const copy = {
      resourceType,
      id: finalId,
      meta: { ...(meta ?? {}), versionId: String(versions + 1), lastUpdated: new Date().toISOString() },
      ...rest,
    };
    this.rememberBeforeWrite(resourceType, finalId);
    const stored = await super.createResource(copy, options);
    this.deletedKeys.delete(keyOf(stored.resourceType, stored.id));
    this.searchIndex.put(this.resources.get(stored.resourceType).get(stored.id));
    return stored;
  }

  /**
   * Search without scanning: the candidates come from the index of the search's reference, token and
   * uri parameters (patient, subject, url, version, identifier, code, ...), then Medplum's own matcher
   * checks every filter on those few, sort keys are computed once per resource (not per comparison),
   * and only the page is copied. A search over thousands of resources answers in milliseconds.
   *
   * FHIR uri search (`url=`, `url:exact=`) matches the whole value (search.html#uri); MemoryRepository
   * matches a prefix, so `url=.../step-1` would also find `.../step-10` (and break If-None-Exist on
   * canonical urls): such filters are also checked exactly.
   */
  async search(searchRequest) {
    const { resourceType, filters = [], sortRules = [], offset, count } = searchRequest;
    const all = this.resources.get(resourceType) ?? new Map();
    const narrowed = this.searchIndex.candidates(resourceType, filters, all);
    const candidates = narrowed?.resources ?? all.values();
    const exact = filters.filter(
      (f) => f.code === 'url' && (f.operator === core.Operator.EQUALS || f.operator === core.Operator.EXACT)
    );
    const matches = [];
    for (const resource of candidates) {
      if (
        (narrowed?.complete || core.matchesSearchRequest(resource, searchRequest)) &&
        exact.every((f) => String(f.value).split(',').includes(resource.url))
      ) {
        matches.push(resource);
      }
    }
    let ordered = matches;
    for (const rule of sortRules) {
      ordered = sortedBy(ordered, rule); // stable: later rules refine, as MemoryRepository does
    }
    let page = offset ? ordered.slice(offset) : ordered;
    page = count !== undefined ? page.slice(0, count) : page;
    const entry = page.map((resource) => ({ resource: core.deepClone(resource) }));
    return { resourceType: 'Bundle', type: 'searchset', entry: entry.length ? entry : undefined, total: matches.length };
  }

  async readResource(resourceType, id) {
    try {
      return await super.readResource(resourceType, id);
    } catch (err) {
      if (this.deletedKeys.has(keyOf(resourceType, id))) {
        throw new core.OperationOutcomeError(core.gone);
      }
      throw err;
    }
  }

  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = [...(this.history.get(resourceType)?.get(id) ?? [])].reverse();
    return {
      resourceType: 'Bundle',
      type: 'history',
      total: versions.length,
      entry: versions.map((version) => ({ resource: JSON.parse(JSON.stringify(version)) })),
    };
  }

  async deleteResource(resourceType, id) {
    if (this.resources.get(resourceType)?.has(id)) {
      this.rememberBeforeWrite(resourceType, id);
    }
    await super.deleteResource(resourceType, id);
    this.deletedKeys.add(keyOf(resourceType, id));
    this.searchIndex.remove(resourceType, id);
  }

  async withTransaction(callback) {
    if (this.transactionDepth > 0) {
      return callback(undefined);
    }
    this.undoLog = new Map();
    this.transactionDepth++;
    try {
      return await callback(undefined);
    } catch (err) {
      this.rollBack(this.undoLog);
      throw err;
    } finally {
      this.transactionDepth--;
      this.undoLog = undefined;
    }
  }

  /** Inside a transaction, the first time a resource is written: what the store holds for it now. */
  rememberBeforeWrite(resourceType, id) {
    const key = keyOf(resourceType, id);
    if (!this.undoLog || this.undoLog.has(key)) {
      return;
    }
    this.undoLog.set(key, {
      resourceType,
      id,
      current: this.resources.get(resourceType)?.get(id),
      versions: this.history.get(resourceType)?.get(id)?.length ?? 0,
      deleted: this.deletedKeys.has(key),
    });
  }

  /** Put back what the undo log recorded: each resource written in the transaction as it was before. */
  rollBack(undoLog) {
    for (const [key, before] of undoLog) {
      const { resourceType, id, current, versions, deleted } = before;
      if (current) {
        this.resources.get(resourceType).set(id, current);
        this.searchIndex.put(current);
      } else {
        this.resources.get(resourceType)?.delete(id);
        this.searchIndex.remove(resourceType, id);
      }
      const byId = this.history.get(resourceType);
      if (versions === 0) {
        byId?.delete(id);
      } else if (byId?.get(id)) {
        byId.get(id).length = versions; // versions are only ever appended
      }
      if (deleted) {
        this.deletedKeys.add(key);
      } else {
        this.deletedKeys.delete(key);
      }
    }
  }
}

const INDEXED_TYPES = new Set(['reference', 'token', 'uri']);

/** The keys a search value may use to find an element: reference, system|code, code, |code. */
function indexKeys(value) {
  if (value === undefined || value === null) {
    return [];
  }
  if (typeof value !== 'object') {
    return [String(value)];
  }
  const keys = [];
  if (typeof value.reference === 'string') {
    keys.push(value.reference);
    const tail = /([A-Za-z]+\/[^/]+)$/.exec(value.reference);
    if (tail) {
      keys.push(tail[1]);
    }
  }
  const codings = Array.isArray(value.coding) ? value.coding : [];
  for (const coding of [value, ...codings]) {
    const code = coding.code ?? coding.value;
    if (typeof code === 'string' || typeof code === 'number' || typeof code === 'boolean') {
      keys.push(String(code), `${coding.system ?? ''}|${code}`);
    }
    if (typeof coding.system === 'string') {
      keys.push(`${coding.system}|`); // system| : any code of that system
    }
  }
  return keys;
}

/**
 * The part of a search parameter's FHIRPath that concerns one resource type, parsed once. Shared
 * parameters such as `patient` list ~40 types ("AllergyIntolerance.patient | CarePlan.subject | ...");
 * evaluating the whole union costs a millisecond per resource, its own branch microseconds.
 */
const compiledExpressions = new Map();
function compiledExpression(resourceType, code) {
  const cacheKey = `${resourceType}:${code}`;
  if (!compiledExpressions.has(cacheKey)) {
    const expression = core.globalSchema.types[resourceType]?.searchParams?.[code]?.expression;
    let atom;
    if (expression) {
      const branches = expression.split(' | ').map((branch) => branch.trim());
      const balanced = branches.every((b) => b.split('(').length === b.split(')').length);
      const own = branches.filter((b) => b.startsWith(`${resourceType}.`) || b.startsWith(`(${resourceType}.`));
      atom = core.parseFhirPath(balanced && own.length ? own.join(' | ') : expression);
    }
    compiledExpressions.set(cacheKey, atom);
  }
  return compiledExpressions.get(cacheKey);
}

function indexedValues(resource, code) {
  const atom = compiledExpression(resource.resourceType, code);
  if (!atom) {
    return [];
  }
  try {
    return atom.eval({ variables: {} }, [core.toTypedValue(resource)]).map((typed) => typed.value);
  } catch {
    return [];
  }
}

/**
 * Per resource type and search parameter, which resources hold which value. A parameter's index is
 * built the first time it is searched by, then kept current by every write (create, update, delete);
 * a transaction rollback drops all of them.
 */
class SearchIndex {
  constructor() {
    this.byType = new Map(); // type -> Map(code -> { byKey: Map(key -> Set(id)), keysOf: Map(id -> [key]) })
  }

  parameterIndex(resourceType, code, all) {
    let byCode = this.byType.get(resourceType);
    if (!byCode) {
      byCode = new Map();
      this.byType.set(resourceType, byCode);
    }
    let index = byCode.get(code);
    if (!index) {
      index = { byKey: new Map(), keysOf: new Map() };
      byCode.set(code, index);
      for (const resource of all.values()) {
        this.add(index, code, resource);
      }
    }
    return index;
  }

  add(index, code, resource) {
    const keys = [...new Set(indexedValues(resource, code).flatMap(indexKeys))];
    for (const key of keys) {
      let ids = index.byKey.get(key);
      if (!ids) {
        ids = new Set();
        index.byKey.set(key, ids);
      }
      ids.add(resource.id);
    }
    index.keysOf.set(resource.id, keys);
  }

  drop(index, id) {
    for (const key of index.keysOf.get(id) ?? []) {
      index.byKey.get(key)?.delete(id);
    }
    index.keysOf.delete(id);
  }

  put(resource) {
    for (const [code, index] of this.byType.get(resource.resourceType) ?? []) {
      this.drop(index, resource.id);
      this.add(index, code, resource);
    }
  }

  remove(resourceType, id) {
    for (const index of this.byType.get(resourceType)?.values() ?? []) {
      this.drop(index, id);
    }
  }

  /**
   * { resources, complete }: the resources the indexed equality filters allow (their intersection),
   * and whether those filters were all the filters (then nothing else needs checking); undefined when
   * no filter can use the index. Modifiers and other operators are left to Medplum's matcher.
   */
  candidates(resourceType, filters, all) {
    const params = core.globalSchema.types[resourceType]?.searchParams ?? {};
    let allowed;
    let complete = true;
    for (const filter of filters) {
      const definition = params[filter.code];
      const usable =
        definition &&
        INDEXED_TYPES.has(definition.type) &&
        filter.operator === core.Operator.EQUALS &&
        typeof filter.value === 'string' &&
        filter.value !== '' &&
        !filter.value.includes('\\');
      if (!usable) {
        complete = false;
        continue;
      }
      const { byKey } = this.parameterIndex(resourceType, filter.code, all);
      const ids = new Set();
      for (const value of filter.value.split(',')) {
        for (const id of byKey.get(value) ?? []) {
          ids.add(id);
        }
      }
      allowed = allowed === undefined ? ids : new Set([...allowed].filter((id) => ids.has(id)));
    }
    if (allowed === undefined) {
      return undefined;
    }
    return { resources: [...allowed].map((id) => all.get(id)).filter(Boolean), complete };
  }
}

/** Resources ordered by one sort rule, each key computed once (MemoryRepository's comparison). */
function sortedBy(resources, rule) {
  const expression = core.globalSchema.types[resources[0]?.resourceType]?.searchParams?.[rule.code]?.expression;
  if (!expression) {
    return resources;
  }
  const keyed = resources.map((resource) => [JSON.stringify(core.evalFhirPath(expression, resource)), resource]);
  keyed.sort((a, b) => a[0].localeCompare(b[0]) * (rule.descending ? -1 : 1));
  return keyed.map(([, resource]) => resource);
}

function errorsFirst(oo) {
  const rank = (item) => (item.severity === 'fatal' || item.severity === 'error' ? 0 : 1);
  return { ...oo, issue: [...oo.issue].sort((a, b) => rank(a) - rank(b)) };
}

// ---------------------------------------------------------------------------------------- HTTP helpers

class HttpError extends Error {
  constructor(status, outcome, headers = {}) {
    super(outcome.issue?.[0]?.details?.text ?? `HTTP ${status}`);
    this.status = status;
    this.outcome = outcome;
    this.headers = headers;
  }
}

const problem = (status, code, text, headers) =>
  new HttpError(status, defs.outcome([defs.issue('error', code, text)]), headers);

function isJsonType(contentType) {
  const type = (contentType ?? '').split(';')[0].trim().toLowerCase();
  return type === '' || type === 'application/fhir+json' || type === 'application/json' || type === 'application/json-patch+json';
}

function acceptsJson(req, query) {
  const format = query.get('_format');
  if (format && !/json/i.test(format)) {
    return false;
  }
  const accept = req.headers.accept;
  if (!accept) {
    return true;
  }
  return accept.split(',').some((part) => {
    const type = part.split(';')[0].trim().toLowerCase();
    return type === '*/*' || type === 'application/*' || type.includes('json');
  });
}

function preferences(req) {
  const prefer = {};
  for (const part of String(req.headers.prefer ?? '').split(/[,;]/)) {
    const [name, raw] = part.split('=');
    if (name?.trim()) {
      prefer[name.trim().toLowerCase()] = (raw ?? '').trim().replace(/^"|"$/g, '');
    }
  }
  return prefer;
}

/** Read the body, discarding (but counting) bytes past the limit so that the client gets a clean 413. */
function readBody(req, limit) {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    const hardLimit = limit + 64 * 1024 * 1024;
    if (declared > hardLimit) {
      req.destroy();
      reject(problem(413, 'too-costly', `Request body too large (limit ${limit} bytes)`));
      return;
    }
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
      } else if (size > hardLimit) {
        req.destroy();
      }
    });
    let ended = false;
    req.on('close', () => {
      if (!ended) {
        reject(problem(400, 'incomplete', 'The request body was not received completely'));
      }
    });
    req.on('end', () => {
      ended = true;
      if (size > limit) {
        reject(problem(413, 'too-costly', `Request body too large: ${size} bytes (limit ${limit} bytes)`));
      } else {
        resolve(Buffer.concat(chunks));
      }
    });
    req.on('error', reject);
  });
}

function parseJsonBody(buffer, contentType) {
  if (!isJsonType(contentType)) {
    throw problem(415, 'not-supported', `Unsupported Content-Type ${contentType}; send application/fhir+json`);
  }
  if (!buffer.length) {
    throw problem(400, 'structure', 'Missing request body');
  }
  try {
    return JSON.parse(buffer.toString('utf8'));
  } catch (err) {
    throw problem(400, 'structure', `Malformed JSON in request body: ${err.message}`);
  }
}

function httpDate(instant) {
  const date = new Date(instant);
  return Number.isNaN(date.getTime()) ? undefined : date.toUTCString();
}

// ---------------------------------------------------------------------------------------------- server

function createServer(options, registry) {
  const validateForWrite = (resource) => defs.validate(resource, registry, { declared: options.declaredProfiles });
  const repo = new ValidatingRepository(validateForWrite);
  const router = new FhirRouter();
  const types = new Set(defs.resourceTypes());
  const capability = buildCapability(registry);
  let queue = Promise.resolve();

  // One request at a time against the repository: no interleaving inside conditional writes or transactions.
  const serialized = (work) => {
    const result = queue.then(work, work);
    queue = result.catch(() => undefined);
    return result;
  };

  const baseUrlFor = (req) => {
    if (options.publicUrl) {
      return options.publicUrl;
    }
    const host = req.headers.host;
    const safeHost = host && /^[A-Za-z0-9.\-:[\]]+$/.test(host) ? host : `${options.host}:${options.port}`;
    return `http://${safeHost}${BASE_PATH}`;
  };

  async function dispatch(req, res, state) {
    const url = new URL(req.url ?? '/', 'http://server.invalid');
    state.path = url.pathname;
    const query = url.searchParams;
    if (!acceptsJson(req, query)) {
      throw problem(406, 'not-supported', 'This server only speaks JSON (application/fhir+json)');
    }
    if (url.pathname !== BASE_PATH && !url.pathname.startsWith(BASE_PATH + '/')) {
      throw problem(404, 'not-found', `Not found: the FHIR base is ${BASE_PATH}`);
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const segments = url.pathname.slice(BASE_PATH.length).split('/').filter(Boolean);
    const base = baseUrlFor(req);

    if (segments.length === 1 && segments[0] === 'metadata') {
      if (method !== 'GET') {
        throw problem(405, 'not-supported', 'Use GET for /metadata', { Allow: 'GET, HEAD' });
      }
      return { status: 200, body: { ...capability, implementation: { ...capability.implementation, url: base } } };
    }

    let body;
    if (['POST', 'PUT', 'PATCH'].includes(method)) {
      const buffer = await readBody(req, options.maxBodyBytes);
      const contentType = req.headers['content-type'];
      if (/^application\/x-www-form-urlencoded/i.test(contentType ?? '') && segments.at(-1) === '_search') {
        body = new URLSearchParams(buffer.toString('utf8'));
      } else {
        body = parseJsonBody(buffer, contentType);
      }
    }

    const type = segments[0];
    if (type && !type.startsWith('$') && !types.has(type)) {
      throw problem(404, 'not-supported', `Unknown resource type: ${type}`);
    }
    if (segments.at(-1) === '$validate') {
      if (method !== 'POST' || segments.length > 2) {
        throw problem(405, 'not-supported', 'Use POST [base]/$validate or POST [base]/[type]/$validate');
      }
      return validateOperation(segments.length === 2 ? type : undefined, body, query);
    }
    if (segments.some((segment) => segment.startsWith('$'))) {
      throw problem(404, 'not-supported', `Operation not supported: ${segments.find((s) => s.startsWith('$'))}`);
    }

    return serialized(() => route(req, method, segments, query, body, base));
  }

  function validateOperation(type, body, query) {
    let resource = body;
    const profiles = query.getAll('profile');
    if (body?.resourceType === 'Parameters' && type !== 'Parameters') {
      const parameters = body.parameter ?? [];
      resource = parameters.find((p) => p.name === 'resource')?.resource;
      for (const p of parameters) {
        if (p.name === 'profile') {
          const canonical = p.valueCanonical ?? p.valueUri ?? p.valueString;
          if (canonical) {
            profiles.push(canonical);
          }
        }
      }
      if (!resource) {
        throw problem(400, 'required', 'Parameters for $validate must contain a "resource" parameter');
      }
    }
    if (type && resource?.resourceType !== type) {
      throw problem(400, 'invalid', `$validate on ${type} got a ${resource?.resourceType ?? 'body without resourceType'}`);
    }
    for (const canonical of profiles) {
      if (!registry.resolve(canonical)) {
        throw problem(400, 'not-found', `Profile not found on this server: ${canonical}`);
      }
    }
    return { status: 200, body: defs.validate(resource, registry, { profiles, declared: profiles.length ? 'ignore' : 'warn' }) };
  }

  async function route(req, method, segments, query, body, base) {
    const [type, id, third, vid] = segments;
    const prefer = preferences(req);
    const headers = Object.fromEntries(
      ['if-match', 'if-none-exist', 'if-none-match', 'if-modified-since']
        .filter((name) => req.headers[name] !== undefined)
        .map((name) => [name, req.headers[name]])
    );

    let interaction;
    if (!type) {
      interaction = method === 'GET' ? 'search-system' : method === 'POST' ? 'bundle' : undefined;
    } else if (segments.length === 1) {
      interaction = { GET: 'search', POST: 'create', PUT: 'conditional-update', DELETE: 'conditional-delete', PATCH: 'conditional-patch' }[method];
    } else if (segments.length === 2 && id === '_search') {
      interaction = method === 'POST' ? 'search' : undefined;
    } else if (segments.length === 2) {
      interaction = { GET: 'read', PUT: 'update', DELETE: 'delete', PATCH: 'patch' }[method];
    } else if (third === '_history') {
      interaction = method === 'GET' ? (segments.length === 3 ? 'history' : segments.length === 4 ? 'vread' : undefined) : undefined;
    }
    if (!interaction) {
      throw problem(405, 'not-supported', `${req.method} is not supported on ${BASE_PATH}/${segments.join('/')}`);
    }

    if (interaction === 'search') {
      const params = new URLSearchParams(query);
      if (body instanceof URLSearchParams) {
        for (const [name, value] of body) {
          params.append(name, value);
        }
      }
      return search(type, params, prefer, base);
    }
    if (interaction === 'create' && body && typeof body === 'object') {
      delete body.id; // the server assigns ids (FHIR http.html#create)
    }
    if (interaction === 'patch' && headers['if-match']) {
      const current = await repo.readResource(type, id);
      const wanted = /"([^"]+)"/.exec(headers['if-match'])?.[1];
      if (current.meta?.versionId !== wanted) {
        throw new core.OperationOutcomeError(core.preconditionFailed);
      }
    }
    let existed = true;
    if (interaction === 'update') {
      existed = await repo.readResource(type, id).then(
        () => true,
        () => false
      );
    }
    if (interaction === 'bundle' && !['batch', 'transaction'].includes(body?.type)) {
      throw problem(400, 'invalid', 'POST [base] takes a Bundle of type batch or transaction');
    }

    if (interaction === 'bundle' && body.type === 'transaction') {
      return transaction(body, base);
    }

    const routerPath = segments.join('/') + (query.toString() ? `?${query}` : '');
    const [outcome, resource] = await router.handleRequest(
      {
        method,
        url: routerPath,
        pathname: '',
        body,
        params: {},
        query: {},
        headers,
        config: { transactions: true },
      },
      repo
    );
    let status = core.getStatus(outcome);
    if (!core.isOk(outcome)) {
      return { status, body: outcome };
    }
    if (interaction === 'update' && !existed && status === 200) {
      status = 201;
    }
    const result = { status, headers: {}, body: resource ?? outcome };
    if (resource?.resourceType === 'Bundle' && interaction === 'bundle') {
      decorateBundleResponse(resource, base);
    } else if (interaction === 'history') {
      for (const entry of resource.entry ?? []) {
        entry.fullUrl = `${base}/${type}/${id}/_history/${entry.resource.meta?.versionId}`;
      }
    } else if (resource && ['read', 'vread', 'create', 'update', 'patch', 'conditional-update', 'conditional-patch'].includes(interaction)) {
      Object.assign(result.headers, resourceHeaders(resource, base, interaction !== 'read' && interaction !== 'vread'));
      if (prefer.return === 'minimal') {
        result.body = undefined;
      } else if (prefer.return === 'operationoutcome') {
        result.body = outcome;
      }
    }
    return result;
  }

  /**
   * A transaction, atomically: the engine runs the entries in its batch mode (which rewrites urn:uuid
   * references but has no entry-count limits and no rollback) inside our repository transaction; the first
   * failed entry rolls everything back and becomes the answer.
   */
  async function transaction(bundle, base) {
    const entries = bundle.entry ?? [];
    return repo
      .withTransaction(async () => {
        const [outcome, response] = await router.handleRequest(
          { method: 'POST', url: '', pathname: '', body: bundle, params: {}, query: {}, headers: {}, config: { transactions: false } },
          repo
        );
        if (!core.isOk(outcome)) {
          throw new core.OperationOutcomeError(outcome);
        }
        (response.entry ?? []).forEach((entry, index) => {
          const status = Number.parseInt(String(entry?.response?.status ?? '500'), 10);
          if (!(status >= 200 && status < 300)) {
            const failed = entry?.response?.outcome ?? core.badRequest(`HTTP ${status}`);
            const request = entries[index]?.request ?? {};
            const where = defs.issue(
              'error',
              'processing',
              `Transaction failed at Bundle.entry[${index}] (${request.method ?? '?'} ${request.url ?? '?'}); nothing was written`
            );
            throw new core.OperationOutcomeError({ ...failed, issue: [...(failed.issue ?? []), where] });
          }
        });
        response.type = 'transaction-response';
        return response;
      })
      .then((response) => {
        decorateBundleResponse(response, base);
        return { status: 200, body: response };
      });
  }

  function search(type, params, prefer, base) {
    const lenient = prefer.handling === 'lenient';
    const known = core.globalSchema.types[type]?.searchParams ?? {};
    const normalized = new URLSearchParams(); // what the engine gets
    const forLinks = new URLSearchParams(); // what the client sent (minus ignored parameters), for paging links
    const ignored = [];
    for (const [rawName, rawValue] of params) {
      const [name, modifier] = rawName.split(':', 2);
      let reason;
      if (UNSUPPORTED_PARAMETERS.has(name)) {
        reason = `${name} is not supported by this test server`;
      } else if (name.includes('.')) {
        reason = `chained search (${rawName}) is not supported by this test server`;
      } else if (!RESULT_PARAMETERS.has(name) && !(name in known && name !== '_compartment')) {
        reason = `Unknown search parameter "${name}" for ${type}`;
      }
      if (reason) {
        if (!lenient) {
          throw problem(400, 'not-supported', `${reason} (send "Prefer: handling=lenient" to ignore it)`);
        }
        ignored.push(rawName);
        continue;
      }
      forLinks.append(rawName, rawValue);
      const definition = known[name];
      let outName = rawName;
      let value = rawValue;
      if (definition?.type === 'reference' && modifier !== 'identifier' && modifier !== 'missing') {
        // A bare id means "that id, whatever the target type" (FHIR search.html#reference); MemoryRepository
        // only matches Type/id, so expand it to Type/id for every target type (an OR within the parameter).
        const typeModifier = modifier && types.has(modifier) ? modifier : undefined;
        const targets = typeModifier ? [typeModifier] : (definition.target ?? []).filter((t) => types.has(t));
        if (typeModifier) {
          outName = name;
        }
        if (targets.length) {
          value = value
            .split(',')
            .flatMap((v) => (v.includes('/') || v.includes(':') ? [v] : targets.map((t) => `${t}/${v}`)))
            .join(',');
        }
      }
      if (name === 'url' && !modifier && value.includes('|') && 'version' in known && !params.has('version')) {
        // canonical|version (FHIR search.html#versions): MemoryRepository only matches url= plus version=
        const bar = value.indexOf('|');
        normalized.append('url', value.slice(0, bar));
        normalized.append('version', value.slice(bar + 1));
        continue;
      }
      normalized.append(outName, value);
    }
    let count = Number.parseInt(normalized.get('_count') ?? '', 10);
    if (!Number.isInteger(count) || count < 0) {
      count = options.pageSize;
    }
    count = Math.min(count, MAX_PAGE_SIZE);
    let offset = Number.parseInt(normalized.get('_offset') ?? '', 10);
    if (!Number.isInteger(offset) || offset < 0) {
      offset = 0;
    }
    for (const q of [normalized, forLinks]) {
      q.set('_count', String(count));
      if (offset) {
        q.set('_offset', String(offset));
      } else {
        q.delete('_offset');
      }
    }
    return router
      .handleRequest(
        { method: 'GET', url: `${type}?${normalized}`, pathname: '', body: undefined, params: {}, query: {}, headers: {} },
        repo
      )
      .then(([outcome, bundle]) => {
        if (!core.isOk(outcome)) {
          return { status: core.getStatus(outcome), body: outcome };
        }
        const link = (relation, newOffset) => {
          const q = new URLSearchParams(forLinks);
          if (newOffset) {
            q.set('_offset', String(newOffset));
          } else {
            q.delete('_offset');
          }
          return { relation, url: `${base}/${type}?${q}` };
        };
        const total = bundle.total ?? 0;
        const links = [link('self', offset), link('first', 0)];
        if (count > 0 && offset + count < total) {
          links.push(link('next', offset + count));
        }
        if (offset > 0) {
          links.push(link('previous', Math.max(0, offset - (count || options.pageSize))));
        }
        const entries = (bundle.entry ?? []).map((entry) => ({
          fullUrl: `${base}/${entry.resource.resourceType}/${entry.resource.id}`,
          resource: entry.resource,
          search: { mode: 'match' },
        }));
        const result = { resourceType: 'Bundle', type: 'searchset', total, link: links };
        if (entries.length) {
          result.entry = entries;
        }
        const headers = ignored.length ? { 'X-Ignored-Search-Parameters': ignored.join(',') } : {};
        return { status: 200, body: result, headers };
      });
  }

  function resourceHeaders(resource, base, withLocation) {
    const headers = {};
    const versionId = resource.meta?.versionId;
    if (versionId) {
      headers.ETag = `W/"${versionId}"`;
    }
    const modified = resource.meta?.lastUpdated && httpDate(resource.meta.lastUpdated);
    if (modified) {
      headers['Last-Modified'] = modified;
    }
    if (withLocation && resource.id) {
      headers.Location = `${base}/${resource.resourceType}/${resource.id}` + (versionId ? `/_history/${versionId}` : '');
    }
    return headers;
  }

  function decorateBundleResponse(bundle, base) {
    for (const entry of bundle.entry ?? []) {
      const response = entry.response ?? (entry.response = {});
      const code = Number(response.status);
      if (code && STATUS_TEXT[code] && !String(response.status).includes(' ')) {
        response.status = `${code} ${STATUS_TEXT[code]}`;
      }
      const resource = entry.resource;
      if (resource?.id && resource.meta?.versionId && resource.resourceType !== 'Bundle') {
        entry.fullUrl = `${base}/${resource.resourceType}/${resource.id}`;
        response.location = `${resource.resourceType}/${resource.id}/_history/${resource.meta.versionId}`;
        response.etag = `W/"${resource.meta.versionId}"`;
        if (resource.meta.lastUpdated) {
          response.lastModified = resource.meta.lastUpdated;
        }
      }
      if (response.outcome && core.isOk(response.outcome)) {
        delete response.outcome;
      }
      if (response.location === undefined) {
        delete response.location;
      }
    }
  }

  const server = http.createServer((req, res) => {
    const started = process.hrtime.bigint();
    const state = { path: '?' };
    dispatch(req, res, state)
      .catch((err) => {
        if (err instanceof HttpError) {
          return { status: err.status, body: err.outcome, headers: err.headers };
        }
        if (err instanceof core.OperationOutcomeError) {
          return { status: core.getStatus(err.outcome), body: err.outcome };
        }
        process.stderr.write(`fhir-server: internal error on ${req.method} ${state.path}: ${err?.stack ?? err}\n`);
        return {
          status: 500,
          body: defs.outcome([defs.issue('fatal', 'exception', `Internal server error: ${err?.message ?? String(err)}`)]),
        };
      })
      .then((result) => {
        send(req, res, result);
        if (options.logRequests) {
          const ms = Number(process.hrtime.bigint() - started) / 1e6;
          process.stderr.write(`${new Date().toISOString()} ${req.method} ${state.path} ${result.status} ${ms.toFixed(1)}ms\n`);
        }
      })
      .catch((err) => process.stderr.write(`fhir-server: could not answer: ${err?.message ?? err}\n`));
  });

  function send(req, res, { status, body, headers = {} }) {
    if (res.destroyed || res.writableEnded || req.socket?.destroyed) {
      return; // the client is gone
    }
    res.on('error', () => undefined);
    const pretty = /^true$/i.test(new URL(req.url ?? '/', 'http://server.invalid').searchParams.get('_pretty') ?? '');
    const text = body === undefined ? '' : JSON.stringify(stripInternalOutcomeIds(body), null, pretty ? 2 : undefined);
    const allHeaders = { ...headers };
    if (text) {
      allHeaders['Content-Type'] = FHIR_JSON;
    }
    allHeaders['Content-Length'] = Buffer.byteLength(text);
    if (status === 413) {
      allHeaders.Connection = 'close';
    }
    res.writeHead(status, allHeaders);
    res.end(req.method === 'HEAD' ? undefined : text);
  }

  server.keepAliveTimeout = 65_000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) {
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    }
  });
  return server;
}

/** Medplum's sentinel outcome ids ("ok", "created", ...) are not resource ids anyone should see. */
function stripInternalOutcomeIds(body) {
  if (body?.resourceType === 'OperationOutcome' && body.id) {
    const copy = { ...body };
    delete copy.id;
    return copy;
  }
  return body;
}

function buildCapability(registry) {
  const interactions = ['read', 'vread', 'update', 'patch', 'delete', 'history-instance', 'create', 'search-type'];
  const validate = { name: 'validate', definition: 'http://hl7.org/fhir/OperationDefinition/Resource-validate' };
  const resources = defs.resourceTypes().map((type) => {
    const searchParams = Object.entries(core.globalSchema.types[type]?.searchParams ?? {})
      .filter(([, sp]) => typeof sp.url === 'string' && sp.url.startsWith('http://hl7.org/fhir/SearchParameter/'))
      .map(([name, sp]) => ({ name, definition: sp.url, type: sp.type }))
      .sort((a, b) => a.name.localeCompare(b.name));
    const entry = {
      type,
      profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
      interaction: interactions.map((code) => ({ code })),
      versioning: 'versioned-update',
      readHistory: true,
      updateCreate: true,
      conditionalCreate: true,
      conditionalRead: 'not-supported',
      conditionalUpdate: true,
      conditionalDelete: 'single',
      operation: [validate],
    };
    const supported = registry.profilesFor(type);
    if (supported.length) {
      entry.supportedProfile = supported;
    }
    if (searchParams.length) {
      entry.searchParam = searchParams;
    }
    return entry;
  });
  return {
    resourceType: 'CapabilityStatement',
    id: 'fhir-desens-test-server',
    name: 'FhirDesensTestServer',
    title: 'fhir-desens development and test FHIR server',
    status: 'active',
    experimental: true,
    date: new Date().toISOString(),
    publisher: 'fhir-desens',
    description:
      'In-memory FHIR R4 server (Medplum fhir-router) for development and tests. Not for patient data: nothing is persisted.',
    kind: 'instance',
    software: { name: 'fhir-desens-fhir-server (@medplum/fhir-router 4.5.2)', version: pkg.version },
    implementation: { description: 'fhir-desens test FHIR server', url: 'http://localhost' },
    fhirVersion: defs.FHIR_VERSION,
    format: ['application/fhir+json', 'json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        documentation: 'No security: bind to 127.0.0.1 only. Searches are strict unless "Prefer: handling=lenient".',
        resource: resources,
        interaction: [{ code: 'transaction' }, { code: 'batch' }, { code: 'search-system' }],
        operation: [validate],
      },
    ],
  };
}

// ------------------------------------------------------------------------------------------------ main

function main() {
  const startedAt = Date.now();
  const options = parseArgs(process.argv.slice(2));
  const registry = new defs.ProfileRegistry();
  try {
    defs.loadCore({ searchParameters: true });
    for (const dir of options.profileDirs) {
      registry.loadDirectory(dir);
    }
  } catch (err) {
    fail(err.message);
  }
  const server = createServer(options, registry);
  let closing = false;
  const shutdown = () => {
    if (closing) {
      return;
    }
    closing = true;
    server.close(() => process.exit(0));
    server.closeIdleConnections();
    setTimeout(() => {
      server.closeAllConnections();
      process.exit(0);
    }, 2000).unref();
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
  // A bug in one request must not take the whole test session down: report it and keep serving.
  process.on('uncaughtException', (err) => process.stderr.write(`fhir-server: uncaught: ${err?.stack ?? err}\n`));
  process.on('unhandledRejection', (err) => process.stderr.write(`fhir-server: unhandled: ${err?.stack ?? err}\n`));
  if (options.exitOnStdinClose) {
    // The parent process holds our stdin: when it dies (even by SIGKILL) we get EOF and stop.
    process.stdin.on('end', shutdown);
    process.stdin.on('close', shutdown);
    process.stdin.on('error', shutdown);
    process.stdin.resume();
  }
  server.on('error', (err) => fail(`cannot listen on ${options.host}:${options.port}: ${err.message}`, 1));
  server.listen(options.port, options.host, () => {
    const address = server.address();
    options.port = address.port;
    const host = ['0.0.0.0', '::', ''].includes(options.host) ? '127.0.0.1' : options.host;
    const hostPart = host.includes(':') ? `[${host}]` : host;
    const url = options.publicUrl ?? `http://${hostPart}:${address.port}${BASE_PATH}`;
    process.stdout.write(
      JSON.stringify({
        event: 'listening',
        url,
        host: options.host,
        port: address.port,
        pid: process.pid,
        profiles: registry.size,
        startupMs: Date.now() - startedAt,
      }) + '\n'
    );
  });
}

if (require.main === module) {
  main();
}

module.exports = { BASE_PATH, createServer, buildCapability, ValidatingRepository };
