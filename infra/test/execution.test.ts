/**
 * Runs the synthesized state machine definitions in a real Amazon States Language interpreter:
 * moto server's Step Functions (LocalStack's ASL engine), started on a free loopback port. The
 * Lambda and CodeBuild tasks are replaced by Pass states that return what the manifest entry says
 * the task returned, so everything else (the distributed Map's item selection and result order,
 * choices, JSONPath and intrinsic functions, the failure summary) runs exactly as synthesized.
 *
 * What moto cannot run: the Lambda and CodeBuild tasks themselves (no Lambda or CodeBuild
 * execution), and the distributed Map's child executions as executions of their own: moto runs
 * the Map Run's items in-process, so it checks neither the role's states:StartExecution grant nor
 * the child execution type, and it enforces neither Step Functions' 256 KiB payload limit nor the
 * 25,000-event history limit. The templates' IAM is asserted in puller-stack.test.ts instead.
 *
 * Each execution is also run by the interpreter the real-Lambda execution tests use
 * (aws-local-stepfunctions, interpreter.ts; crates/omx-lambda/tests/state_machine_runs.rs), and
 * both must end the same way: the cross-check of that interpreter on what both can run. The one
 * known difference is the empty manifest (a wildcard path matching nothing: an empty list in moto
 * and in Step Functions, States.Runtime in aws-local-stepfunctions), which moto alone runs.
 */
import assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { StateMachine } from './interpreter';
import { StateMachineDefinition, stateMachineDefinition, synthesize } from './support';

const REPO = path.resolve(__dirname, '..', '..');
const MOTO_SERVER = process.env.OMX_MOTO_SERVER ?? path.join(REPO, '.testenv', 'venv', 'bin', 'moto_server');
const motoMissing = !fs.existsSync(MOTO_SERVER);
if (motoMissing && process.env.OMX_TESTENV_SKIP !== '1') {
  throw new Error(`${MOTO_SERVER} is missing: run scripts/install-deps (or set OMX_TESTENV_SKIP=1 to skip these tests)`);
}

const synthesized = synthesize();

/** The puller with its tasks replaced: items are `{"lambda": <omx-pull-image output>}`. */
function pullerWithStandIns(): StateMachineDefinition {
  const definition = stateMachineDefinition(synthesized.puller);
  const states = definition.States['Manifest Items']!.ItemProcessor.States;
  states['Copy Image'] = { Type: 'Pass', OutputPath: '$.image.lambda', Next: states['Copy Image'].Next };
  states['Copy Image With CodeBuild'] = {
    Type: 'Pass',
    Result: { id: 'omx-container-pull:stand-in', status: 'SUCCEEDED' },
    ResultPath: '$.build',
    Next: states['Copy Image With CodeBuild'].Next,
  };
  return definition;
}

/** The builder with its tasks replaced: items carry `"prepared": <omx-build-prepare output>`. */
function builderWithStandIns(): StateMachineDefinition {
  const definition = stateMachineDefinition(synthesized.builder);
  const map = definition.States['Manifest Items']!;
  // The synthesized ItemSelector passes only source_uri and target_image; the stand-in also
  // needs the entry's canned `prepared` answer.
  map.ItemSelector = { ...map.ItemSelector, 'prepared.$': '$$.Map.Item.Value.prepared' };
  const states = map.ItemProcessor.States;
  states['Prepare Build'] = { Type: 'Pass', OutputPath: '$.prepared', Next: states['Prepare Build'].Next };
  states['Build Image With CodeBuild'] = {
    Type: 'Pass',
    Result: { id: 'omx-container-build:stand-in', status: 'SUCCEEDED' },
    ResultPath: '$.build',
    Next: states['Build Image With CodeBuild'].Next,
  };
  return definition;
}

let moto: ChildProcess | undefined;
let endpoint = '';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

async function stepFunctions(action: string, body: Record<string, unknown>): Promise<Record<string, any>> {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/x-amz-json-1.0',
      'X-Amz-Target': `AWSStepFunctions.${action}`,
      // moto reads the service and region from the credential scope and checks no signature.
      Authorization: 'AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/states/aws4_request, SignedHeaders=host, Signature=0',
    },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${action} failed: ${response.status} ${text}`);
  return JSON.parse(text);
}

/** How aws-local-stepfunctions ends the same execution, in DescribeExecution's terms. */
async function executeLocally(definition: StateMachineDefinition, input: unknown): Promise<Record<string, unknown>> {
  try {
    // The stand-ins leave the tasks' Catch targets unreachable, which its validator refuses;
    // the synthesized definitions themselves are validated by definition-validity.test.ts.
    const machine = new StateMachine(definition as any, { validationOptions: { noValidate: true } });
    const output = await machine.run(input as any).result;
    return { status: 'SUCCEEDED', output };
  } catch (error) {
    const cause = (error as { cause?: Error }).cause ?? (error as Error);
    return { status: 'FAILED', error: cause.name, cause: cause.message };
  }
}

let machineCount = 0;
async function execute(definition: StateMachineDefinition, input: unknown, crossCheck = true): Promise<Record<string, any>> {
  const execution = await executeInMoto(definition, input);
  if (crossCheck) {
    const moto = execution.status === 'SUCCEEDED'
      ? { status: execution.status, output: JSON.parse(execution.output) }
      : { status: execution.status, error: execution.error, cause: execution.cause };
    assert.deepEqual(await executeLocally(definition, input), moto, 'aws-local-stepfunctions ends the execution as moto does');
  }
  return execution;
}

async function executeInMoto(definition: StateMachineDefinition, input: unknown): Promise<Record<string, any>> {
  machineCount += 1;
  const { stateMachineArn } = await stepFunctions('CreateStateMachine', {
    name: `omx-test-${machineCount}`,
    definition: JSON.stringify(definition),
    roleArn: 'arn:aws:iam::123456789012:role/omx-test',
  });
  const { executionArn } = await stepFunctions('StartExecution', {
    stateMachineArn,
    name: `run-${machineCount}`,
    input: JSON.stringify(input),
  });
  // Bounded polling: the interpreter finishes these definitions in well under a second.
  for (let attempt = 0; attempt < 600; attempt += 1) {
    const execution = await stepFunctions('DescribeExecution', { executionArn });
    if (execution.status !== 'RUNNING') return execution;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`execution ${executionArn} still RUNNING after 600 polls`);
}

const pulled = (image: string, status: string, tooLarge = false) => ({
  lambda: { image, status, target: `123456789012.dkr.ecr.us-east-1.amazonaws.com/dockerhub/${image}`, digest: null, message: `${image}: ${status}`, too_large: tooLarge },
});

describe('state machines executed by a Step Functions interpreter (moto server)', { skip: motoMissing && 'moto_server not installed (OMX_TESTENV_SKIP=1)' }, () => {
  before(async () => {
    const port = await freePort();
    endpoint = `http://127.0.0.1:${port}`;
    moto = spawn(MOTO_SERVER, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    let lastError: unknown;
    for (let attempt = 0; attempt < 200; attempt += 1) {
      try {
        const response = await fetch(`${endpoint}/moto-api/config`, {
          method: 'POST',
          body: JSON.stringify({ stepfunctions: { execute_state_machine: true } }),
        });
        if (response.ok) return;
        lastError = new Error(`HTTP ${response.status}`);
      } catch (error) {
        lastError = error;
      }
      if (moto.exitCode !== null) throw new Error(`moto_server exited with ${moto.exitCode}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`moto_server did not answer on ${endpoint}: ${lastError}`);
  });

  after(() => {
    if (moto?.pid !== undefined && moto.exitCode === null) process.kill(moto.pid);
  });

  it('puller: lists every image and copies too-large images with CodeBuild', async () => {
    const execution = await execute(pullerWithStandIns(), {
      manifest: [pulled('ubuntu:20.04', 'SKIPPED'), pulled('python:3.12', 'SUCCEEDED'), pulled('gatk:4.4', 'SUCCEEDED', true)],
    });
    assert.equal(execution.status, 'SUCCEEDED', execution.cause);
    const output = JSON.parse(execution.output);
    assert.equal(output.total, 3);
    assert.deepEqual(output.images.map((image: { image: string; status: string }) => [image.image, image.status]), [
      ['ubuntu:20.04', 'SKIPPED'],
      ['python:3.12', 'SUCCEEDED'],
      ['gatk:4.4', 'SUCCEEDED'],
    ]);
    assert.deepEqual(output.images[2], {
      image: 'gatk:4.4',
      status: 'SUCCEEDED',
      target: '123456789012.dkr.ecr.us-east-1.amazonaws.com/dockerhub/gatk:4.4',
      digest: null,
      message: 'copied by CodeBuild build omx-container-pull:stand-in',
      too_large: true,
    });
  });

  it('puller: fails the execution when any image failed, naming only the failed ones', async () => {
    const execution = await execute(pullerWithStandIns(), {
      manifest: [pulled('ubuntu:20.04', 'SUCCEEDED'), pulled('nope:1', 'FAILED'), pulled('big:1', 'SUCCEEDED', true), pulled('gone:2', 'FAILED')],
    });
    assert.equal(execution.status, 'FAILED');
    assert.equal(execution.error, 'OmxImagesFailed');
    const match = /^2 of 4 image\(s\) failed: (.*)$/s.exec(execution.cause);
    assert.ok(match, execution.cause);
    assert.deepEqual(JSON.parse(match[1]!).map((image: { image: string; message: string }) => [image.image, image.message]), [
      ['nope:1', 'nope:1: FAILED'],
      ['gone:2', 'gone:2: FAILED'],
    ]);
  });

  it('puller: succeeds with nothing to do on an empty manifest', async () => {
    const execution = await execute(pullerWithStandIns(), { manifest: [] }, false);
    assert.equal(execution.status, 'SUCCEEDED', execution.cause);
    assert.deepEqual(JSON.parse(execution.output), { images: [], total: 0 });
  });

  it('puller: runs a large manifest as one Map Run whose history does not grow with the manifest', async () => {
    // 600 results of about 200 bytes stay within the 256 KiB payload limit AWS would enforce.
    const manifest = (count: number) =>
      Array.from({ length: count }, (_, index) => pulled(`tool-${index}:1`, index % 7 === 0 ? 'SKIPPED' : 'SUCCEEDED', index % 50 === 0));
    const eventTypes = async (execution: Record<string, any>): Promise<string[]> => {
      const history = await stepFunctions('GetExecutionHistory', { executionArn: execution.executionArn, maxResults: 1000 });
      return history.events.map((event: { type: string }) => event.type);
    };
    const small = await execute(pullerWithStandIns(), { manifest: manifest(3) });
    const large = await execute(pullerWithStandIns(), { manifest: manifest(600) });
    assert.equal(large.status, 'SUCCEEDED', large.cause);
    const output = JSON.parse(large.output);
    assert.equal(output.total, 600);
    assert.deepEqual(
      output.images.map((image: { image: string }) => image.image),
      manifest(600).map((entry) => entry.lambda.image),
      'results come back in manifest order',
    );
    const byCodeBuild = output.images.filter((image: { message: string }) => image.message.startsWith('copied by CodeBuild'));
    assert.equal(byCodeBuild.length, 12);
    const largeEvents = await eventTypes(large);
    assert.ok(largeEvents.includes('MapRunStarted') && largeEvents.includes('MapRunSucceeded'), largeEvents.join(', '));
    assert.deepEqual(largeEvents, await eventTypes(small), 'per-item events stay in the Map Run, out of the parent history');
  });

  it('builder: skips unchanged sources, builds the rest, fails on a failed preparation', async () => {
    const item = (name: string, prepared: Record<string, unknown>) => ({
      source_uri: `s3://bucket/${name}/`,
      target_image: `${name}:omics`,
      prepared: {
        source_uri: `s3://bucket/${name}/`,
        target_image: `${name}:omics`,
        target: `123456789012.dkr.ecr.us-east-1.amazonaws.com/${name}:omics`,
        source_digest: `sha256:${name}`,
        message: name,
        ...prepared,
      },
    });
    const ok = await execute(builderWithStandIns(), {
      manifest: [item('same', { skip: true, status: 'SKIPPED' }), item('changed', { skip: false, status: 'PENDING' })],
    });
    assert.equal(ok.status, 'SUCCEEDED', ok.cause);
    const output = JSON.parse(ok.output);
    assert.equal(output.total, 2);
    assert.deepEqual(output.builds.map((build: { target_image: string; status: string }) => [build.target_image, build.status]), [
      ['same:omics', 'SKIPPED'],
      ['changed:omics', 'SUCCEEDED'],
    ]);
    assert.equal(output.builds[1].message, 'built by CodeBuild build omx-container-build:stand-in');
    assert.equal(output.builds[1].source_digest, 'sha256:changed');

    const failed = await execute(builderWithStandIns(), {
      manifest: [item('changed', { skip: false, status: 'PENDING' }), item('broken', { skip: false, status: 'FAILED', message: 'source not found' })],
    });
    assert.equal(failed.status, 'FAILED');
    assert.equal(failed.error, 'OmxBuildsFailed');
    assert.match(failed.cause, /^1 of 2 build\(s\) failed: \[\{.*"target_image":"broken:omics".*"message":"source not found".*\}\]$/s);
  });
});
