/**
 * A stand-in for the AWS Step Functions API on a free loopback port, whose executions are the
 * CDK app's state machines run locally (local-execution.ts), for `omx-ecr-helper submit` in
 * crates/omx-lambda/tests/state_machine_runs.rs:
 *
 *   node --import tsx infra/test/step-functions-api.ts < services.json
 *
 * The first line of stdin is the LocalServices; once listening, it prints `{"endpoint":
 * "http://127.0.0.1:PORT"}` and serves until stdin closes, then exits (removing its temporary
 * folders).
 *
 * The operations `submit` calls, in the AWS JSON 1.0 protocol (`X-Amz-Target:
 * AWSStepFunctions.<Operation>`; AWS Step Functions API Reference):
 * - ListStateMachines: `omx-container-puller` and `omx-container-builder`;
 * - StartExecution: starts an execution (status RUNNING) and answers its `executionArn`;
 *   `ExecutionAlreadyExists` for a name used before;
 * - DescribeExecution: status, input, and `output` or `error` and `cause` once it ended;
 * - GetExecutionHistory: the execution's top-level `*StateExited` events with their
 *   `stateExitedEventDetails` (`name`, `output`), newest first with `reverseOrder`.
 * Timestamps are epoch seconds, as the JSON protocol sends them.
 */
import * as http from 'node:http';
import { BUILDER_STATE_MACHINE_NAME, PULLER_STATE_MACHINE_NAME } from '../lib/constants';
import { LocalExecution, LocalMachine, LocalServices, localMachine } from './local-execution';

const ARN_PREFIX = 'arn:aws:states:us-east-1:123456789012';

interface Execution {
  arn: string;
  stateMachineArn: string;
  name: string;
  input: string;
  started: number;
  ended?: number;
  result?: LocalExecution;
}

class ServiceError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
  }
}

function serve(services: LocalServices): void {
  const machines = new Map<string, { name: string; machine: LocalMachine }>();
  for (const [name, stack] of [[PULLER_STATE_MACHINE_NAME, 'puller'], [BUILDER_STATE_MACHINE_NAME, 'builder']] as const) {
    machines.set(`${ARN_PREFIX}:stateMachine:${name}`, { name, machine: localMachine(stack, services) });
  }
  const executions = new Map<string, Execution>();
  const seconds = (millis: number) => millis / 1000;

  const operations: Record<string, (body: any) => unknown> = {
    ListStateMachines: () => ({
      stateMachines: [...machines].map(([arn, { name }]) => ({ stateMachineArn: arn, name, type: 'STANDARD', creationDate: 0 })),
    }),
    StartExecution: (body) => {
      const machine = machines.get(body.stateMachineArn);
      if (!machine) throw new ServiceError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${body.stateMachineArn}'`);
      const name: string = body.name ?? `execution-${executions.size + 1}`;
      const arn = `${ARN_PREFIX}:execution:${machine.name}:${name}`;
      if (executions.has(arn)) throw new ServiceError('ExecutionAlreadyExists', `Execution Already Exists: '${arn}'`);
      const execution: Execution = { arn, stateMachineArn: body.stateMachineArn, name, input: body.input ?? '{}', started: Date.now() };
      executions.set(arn, execution);
      void machine.machine.run(JSON.parse(execution.input)).then((result) => {
        execution.result = result;
        execution.ended = Date.now();
      });
      return { executionArn: arn, startDate: seconds(execution.started) };
    },
    DescribeExecution: (body) => {
      const execution = executions.get(body.executionArn);
      if (!execution) throw new ServiceError('ExecutionDoesNotExist', `Execution Does Not Exist: '${body.executionArn}'`);
      const result = execution.result;
      return {
        executionArn: execution.arn,
        stateMachineArn: execution.stateMachineArn,
        name: execution.name,
        status: result?.status ?? 'RUNNING',
        startDate: seconds(execution.started),
        input: execution.input,
        ...(execution.ended ? { stopDate: seconds(execution.ended) } : {}),
        ...(result?.status === 'SUCCEEDED' ? { output: JSON.stringify(result.output) } : {}),
        ...(result?.status === 'FAILED' ? { error: result.error, cause: result.cause } : {}),
      };
    },
    GetExecutionHistory: (body) => {
      const execution = executions.get(body.executionArn);
      if (!execution) throw new ServiceError('ExecutionDoesNotExist', `Execution Does Not Exist: '${body.executionArn}'`);
      const events = (execution.result?.exited ?? []).map((state, index) => ({
        id: index + 1,
        timestamp: seconds(execution.ended ?? Date.now()),
        type: 'PassStateExited',
        stateExitedEventDetails: { name: state.name, output: JSON.stringify(state.output) },
      }));
      return { events: body.reverseOrder ? events.reverse() : events };
    },
  };

  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const operation = String(request.headers['x-amz-target'] ?? '').replace(/^AWSStepFunctions\./, '');
      let status = 200;
      let answer: unknown;
      try {
        const handler = operations[operation];
        if (!handler) throw new ServiceError('UnknownOperationException', `this stand-in does not serve ${operation}`);
        answer = handler(JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}'));
      } catch (error) {
        status = 400;
        const type = error instanceof ServiceError ? error.type : 'InternalFailure';
        answer = { __type: type, message: (error as Error).message };
      }
      response.writeHead(status, { 'Content-Type': 'application/x-amz-json-1.0' });
      response.end(JSON.stringify(answer));
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as { port: number };
    process.stdout.write(`${JSON.stringify({ endpoint: `http://127.0.0.1:${port}` })}\n`);
  });
}

let received = '';
let serving = false;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk: string) => {
  received += chunk;
  const newline = received.indexOf('\n');
  if (!serving && newline >= 0) {
    serving = true;
    serve(JSON.parse(received.slice(0, newline)));
  }
});
process.stdin.on('end', () => process.exit(0));
