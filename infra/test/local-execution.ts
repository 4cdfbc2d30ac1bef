/**
 * One state machine of the CDK app, ready to execute locally: its definition as CloudFormation
 * deploys it (deployed-definition.ts), unmodified, run by aws-local-stepfunctions 3.0.0, a
 * TypeScript implementation of the Amazon States Language spec (interpreter.ts: with two
 * corrections to documented behaviour), with each Task state routed by
 * its `Resource` to local-integrations.ts: `lambda:invoke` to the Lambda Invoke API served for
 * each real `bootstrap`, `codebuild:startBuild.sync` to the project's buildspec run locally.
 *
 * What this interpreter does not do as Step Functions does (so what these runs do not check):
 * a distributed Map runs its items in-process, like an inline Map, at most `MaxConcurrency` at a
 * time: no child executions, Map Run, `Label`, `ToleratedFailure*`, `ItemReader` or
 * `ResultWriter` (the definitions use none of the last four); no JSONata (the definitions use
 * JSONPath only); a JSONPath wildcard that matches nothing (`$[*].status` of an empty results
 * list) is a States.Runtime error here but an empty list in Step Functions, so an empty manifest
 * is left to the moto execution test; a Task without `TimeoutSeconds` times out after 60 s (the
 * spec's default; Step Functions has none); no payload-size or history limits; no IAM.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DeployedDefinition, deployedDefinition } from './deployed-definition';
import { StateMachine } from './interpreter';
import { LocalCodeBuild, invokeLambda, startBuildSync } from './local-integrations';
import { allStates, synthesize } from './support';

export interface LocalServices {
  context?: Record<string, string>;
  /** The app-config.json to synthesize with (default: none). */
  appConfig?: unknown;
  /** Where each function's Lambda Invoke API is served, by binary name. */
  lambdaEndpoints: Record<string, string>;
  /** The CodeBuild stand-in's source bundle CLI and the environment builds get on top of the project's. */
  codeBuild: { cli: string; environment: Record<string, string> };
}

export type Stack = 'puller' | 'builder';

/** A finished execution. */
export interface LocalExecution {
  readonly status: 'SUCCEEDED' | 'FAILED';
  readonly output?: unknown;
  readonly error?: string;
  readonly cause?: string;
  /** The top-level states' outputs as they exited, in order (a history's StateExited events). */
  readonly exited: Array<{ name: string; output: unknown }>;
  /** The builds the CodeBuild stand-in ran. */
  readonly builds: LocalCodeBuild['builds'];
  readonly millis: number;
}

export interface LocalMachine {
  readonly deployed: DeployedDefinition;
  run(input: unknown): Promise<LocalExecution>;
}

/** Synthesizes the app with `services`' settings and prepares `stack`'s state machine. */
export function localMachine(stack: Stack, services: LocalServices): LocalMachine {
  const deployed = deployedDefinition(synthesize(services.context ?? {}, services.appConfig)[stack]);
  const definition = JSON.parse(deployed.text);
  const endpoints = Object.fromEntries(
    Object.entries(deployed.functions).map(([arn, binary]) => [arn, services.lambdaEndpoints[binary] ?? '']),
  );
  const machine = new StateMachine(definition);

  const run = async (input: unknown): Promise<LocalExecution> => {
    const codeBuild: LocalCodeBuild = {
      // The project's source is the CDK asset holding only the CLI binary (helper-project.ts).
      stageSource: (directory) => fs.copyFileSync(services.codeBuild.cli, path.join(directory, 'omx-ecr-helper')),
      environment: services.codeBuild.environment,
      builds: [],
    };
    const handlers: Record<string, (input: any) => Promise<any>> = {};
    for (const [name, state] of Object.entries(allStates(definition))) {
      if (state.Type !== 'Task') continue;
      if (state.Resource === 'arn:aws:states:::lambda:invoke') handlers[name] = (parameters) => invokeLambda(endpoints, parameters);
      else if (state.Resource === 'arn:aws:states:::codebuild:startBuild.sync') handlers[name] = async (parameters) => startBuildSync(deployed.projects, codeBuild, parameters);
      else throw new Error(`no local integration for ${name}'s resource ${state.Resource}`);
    }
    const started = Date.now();
    const execution = machine.run(input as any, { overrides: { taskResourceLocalHandlers: handlers } });
    const exited: LocalExecution['exited'] = [];
    const logged = (async () => {
      for await (const event of execution.eventLogs) {
        // Events of the Map's iterations carry their item's index; the history is the top level's.
        if (event.type === 'StateExited' && !('index' in event)) exited.push({ name: event.state.name, output: event.state.output });
      }
    })();
    let ending: Pick<LocalExecution, 'status' | 'output' | 'error' | 'cause'>;
    try {
      ending = { status: 'SUCCEEDED', output: await execution.result };
    } catch (error) {
      // The interpreter wraps the failing state's error (name = Error, message = Cause).
      const cause = (error as { cause?: Error }).cause ?? (error as Error);
      ending = { status: 'FAILED', error: cause.name, cause: cause.message };
    }
    await logged;
    return { ...ending, exited, builds: codeBuild.builds, millis: Date.now() - started };
  };
  return { deployed, run };
}
