/**
 * Both state machine definitions, exactly as CloudFormation passes them to Step Functions, checked
 * against the Amazon States Language schema (the `asl-validator` package: JSON schema, transitions,
 * terminal states, JSONPath syntax, ARN syntax), and against what the validator does not check:
 * that every payload template is a JSON object (the validator accepts `"Parameters": "$"`, which
 * Step Functions never evaluates as a path) and that each Lambda gets exactly the fields its Rust
 * request type deserializes (`deny_unknown_fields`).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import aslValidator from 'asl-validator';
import { deployedDefinition } from './deployed-definition';
import { allStates, synthesize } from './support';

/** Fields of the Rust request types (crates/omx-lambda: PullImageRequest, BuildPrepareRequest). */
const REQUEST_FIELDS: Record<string, { required: string[]; optional: string[] }> = {
  'omx-pull-image': { required: ['image'], optional: ['namespaces'] },
  'omx-build-prepare': { required: ['source_uri', 'target_image'], optional: [] },
};

/** The fields that take payload templates (ASL spec, "Payload Template"; Step Functions: ItemSelector, ResultSelector). */
const TEMPLATE_FIELDS = ['Parameters', 'ItemSelector', 'ResultSelector'];

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const synthesized = synthesize();

for (const [machine, template] of [['omx-container-puller', synthesized.puller], ['omx-container-builder', synthesized.builder]] as const) {
  describe(`${machine} definition`, () => {
    const deployed = deployedDefinition(template);
    const definition = JSON.parse(deployed.text);

    it('is valid Amazon States Language (asl-validator)', () => {
      // The validator annotates the object it is given, so it gets a copy.
      const { isValid, errorsText } = aslValidator(JSON.parse(deployed.text));
      assert.ok(isValid, errorsText('\n'));
    });

    it('uses only JSON objects as payload templates', () => {
      for (const [name, state] of Object.entries(allStates(definition))) {
        for (const field of TEMPLATE_FIELDS) {
          if (field in state) assert.ok(isObject(state[field]), `${name}.${field} is an object, not ${JSON.stringify(state[field])}`);
        }
      }
    });

    it('gives each Lambda exactly the fields its request type reads', () => {
      const lambdaTasks = Object.entries(allStates(definition)).filter(([, state]) => state.Type === 'Task' && String(state.Resource).includes(':lambda:'));
      assert.ok(lambdaTasks.length > 0);
      for (const [name, state] of lambdaTasks) {
        assert.equal(state.Resource, 'arn:aws:states:::lambda:invoke', `${name} uses the optimized Lambda integration`);
        assert.ok(isObject(state.Parameters.Payload), `${name}: Payload is an object template`);
        const binary = deployed.functions[state.Parameters.FunctionName];
        assert.ok(binary, `${name} invokes a function of this stack`);
        const fields = Object.keys(state.Parameters.Payload).map((key) => key.replace(/\.\$$/, ''));
        const expected = REQUEST_FIELDS[binary]!;
        for (const field of expected.required) assert.ok(fields.includes(field), `${name} passes ${field} to ${binary}`);
        for (const field of fields) assert.ok([...expected.required, ...expected.optional].includes(field), `${binary} reads no ${field}`);
        assert.equal(state.OutputPath, '$.Payload', `${name} continues with the function's response`);
      }
    });
  });
}
