/**
 * Runs one execution of a synthesized state machine (local-execution.ts), for
 * crates/omx-lambda/tests/state_machine_runs.rs:
 *
 *   node --import tsx infra/test/run-state-machine.ts < request.json
 *
 * The request (stdin) is the LocalServices (`context`, `appConfig`, `lambdaEndpoints`,
 * `codeBuild`) plus `"stack": "puller" | "builder"` and the execution's `input`. The answer (the
 * last stdout line) is the LocalExecution (`status`, `output` or `error` and `cause`, `builds`,
 * ...) with the `policies` (IAM statements) of each function's and project's role in the same
 * template; without an `input`, only the `policies`.
 */
import * as fs from 'node:fs';
import { LocalServices, Stack, localMachine } from './local-execution';

async function main(): Promise<void> {
  const request: LocalServices & { stack: Stack; input: unknown } = JSON.parse(fs.readFileSync(0, 'utf8'));
  const machine = localMachine(request.stack, request);
  const execution = request.input === undefined ? {} : await machine.run(request.input);
  process.stdout.write(`${JSON.stringify({ ...execution, policies: machine.deployed.policies })}\n`);
}

main().catch((error) => {
  process.stderr.write(`run-state-machine: ${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
