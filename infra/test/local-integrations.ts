/**
 * Stand-ins for the two AWS service integrations the state machines' Task states call, for an
 * interpreter (aws-local-stepfunctions) that hands each Task state's evaluated `Parameters` to a
 * local function and continues with what it returns, as Step Functions continues with the
 * integration's output.
 *
 * - `arn:aws:states:::lambda:invoke` (Step Functions developer guide, "Invoke an AWS Lambda
 *   function with Step Functions"): calls the Lambda `Invoke` API (synchronous) of the function
 *   named by `FunctionName` with `Payload` as the event, and outputs
 *   `{"ExecutedVersion", "Payload": <the function's response, parsed>, "SdkHttpMetadata",
 *   "SdkResponseMetadata", "StatusCode": 200}`. A function error fails the task with the error's
 *   `errorType` as the error name (`Lambda.Unknown` without one) and the error document as the
 *   cause, as Step Functions reports it.
 * - `arn:aws:states:::codebuild:startBuild.sync` ("Start an AWS CodeBuild build with Step
 *   Functions"; `.sync` waits for the build): runs the project's buildspec phases, as CodeBuild
 *   would, in a fresh directory holding the project's source bundle, with the project's
 *   environment variables overridden by `EnvironmentVariablesOverride`. It outputs the
 *   `{"Build": {"Id", "BuildStatus", ...}}` of the finished build, and fails the task
 *   (`States.TaskFailed`, the build as the cause) when the build fails.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CodeBuildProjectInfo } from './deployed-definition';

/** An error of a Task state: Catch and Retry match `name` (the States Language "Error"), `message` is the "Cause". */
export function taskError(name: string, cause: string): Error {
  const error = new Error(cause);
  error.name = name;
  return error;
}

/** Where the Lambda `Invoke` API of each function is served, by function ARN. */
export type LambdaEndpoints = Record<string, string>;

export async function invokeLambda(endpoints: LambdaEndpoints, parameters: { FunctionName: string; Payload?: unknown }): Promise<Record<string, unknown>> {
  const endpoint = endpoints[parameters.FunctionName];
  if (!endpoint) throw taskError('Lambda.ResourceNotFoundException', `Function not found: ${parameters.FunctionName}`);
  const url = `${endpoint}/2015-03-31/functions/${encodeURIComponent(parameters.FunctionName)}/invocations`;
  // The event is the Payload template's result (both definitions always give one).
  const response = await fetch(url, { method: 'POST', body: JSON.stringify(parameters.Payload ?? {}) });
  const text = await response.text();
  if (!response.ok) throw taskError(`Lambda.${response.headers.get('x-amzn-errortype') ?? 'AWSLambdaException'}`, text);
  const payload = text ? JSON.parse(text) : null;
  if (response.headers.get('x-amz-function-error')) {
    throw taskError(typeof payload?.errorType === 'string' ? payload.errorType : 'Lambda.Unknown', text);
  }
  return {
    ExecutedVersion: response.headers.get('x-amz-executed-version') ?? '$LATEST',
    Payload: payload,
    SdkHttpMetadata: { HttpStatusCode: 200 },
    SdkResponseMetadata: { RequestId: `local-${Date.now()}` },
    StatusCode: 200,
  };
}

export interface LocalCodeBuild {
  /** Fills a build's source directory with the project's source bundle. */
  readonly stageSource: (directory: string) => void;
  /** Environment every build gets on top of the project's (the emulators' endpoints and credentials). */
  readonly environment: Record<string, string>;
  /** Every build run, in order. */
  readonly builds: Array<{ project: string; overrides: Record<string, string>; status: string; log: string }>;
}

let buildCount = 0;

export function startBuildSync(
  projects: Record<string, CodeBuildProjectInfo>,
  codeBuild: LocalCodeBuild,
  parameters: { ProjectName: string; EnvironmentVariablesOverride?: Array<{ Name: string; Type?: string; Value: string }> },
): Record<string, unknown> {
  const project = projects[parameters.ProjectName];
  if (!project) throw taskError('CodeBuild.ResourceNotFoundException', `Project cannot be found: ${parameters.ProjectName}`);
  const overrides = Object.fromEntries((parameters.EnvironmentVariablesOverride ?? []).map((variable) => [variable.Name, variable.Value]));
  buildCount += 1;
  const id = `${parameters.ProjectName}:local-${buildCount}`;
  const source = fs.mkdtempSync(path.join(os.tmpdir(), 'omx-codebuild-src-'));
  let status = 'SUCCEEDED';
  let log = '';
  try {
    codeBuild.stageSource(source);
    // CodeBuild runs the phases in order and stops at the first failing command (buildspec 0.2,
    // `env.shell: bash`); each phase's commands run in one shell here.
    for (const phase of ['install', 'pre_build', 'build', 'post_build']) {
      const commands = project.buildSpec.phases[phase]?.commands;
      if (!commands) continue;
      const run = spawnSync('bash', ['-e', '-c', commands.join('\n')], {
        cwd: source,
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: source, CODEBUILD_BUILD_ID: id, ...project.environment, ...codeBuild.environment, ...overrides },
        encoding: 'utf8',
        timeout: 300_000,
      });
      log += `[${phase}]\n${run.stdout ?? ''}${run.stderr ?? ''}`;
      if (run.status !== 0) {
        status = 'FAILED';
        break;
      }
    }
  } finally {
    fs.rmSync(source, { recursive: true, force: true });
  }
  codeBuild.builds.push({ project: parameters.ProjectName, overrides, status, log });
  const build = { Id: id, Arn: `arn:aws:codebuild:us-east-1:123456789012:build/${id}`, ProjectName: parameters.ProjectName, BuildStatus: status, BuildComplete: true };
  if (status !== 'SUCCEEDED') throw taskError('States.TaskFailed', JSON.stringify({ Build: build }));
  return { Build: build };
}
