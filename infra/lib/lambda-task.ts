import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { Duration } from 'aws-cdk-lib';
import { Construct } from 'constructs';

export interface LambdaTaskProps {
  readonly comment: string;
  readonly lambdaFunction: lambda.IFunction;
  /** The Lambda's event, as a payload template: keys ending in `.$` are JSONPaths into the state input. */
  readonly payload: Record<string, unknown>;
}

/**
 * A Task state invoking a Lambda through the optimized integration (`arn:aws:states:::lambda:invoke`)
 * with `Parameters: {"FunctionName": ..., "Payload": {...}}`; its output is the function's
 * response (`OutputPath: "$.Payload"`).
 *
 * The payload is always an object template. CDK's `payloadResponseOnly: true` with
 * `TaskInput.fromJsonPathAt('$')` synthesizes `"Parameters": "$"`, which Step Functions does not
 * evaluate as a path (Parameters must be an object: the function would get the string "$" or the
 * definition is refused; aws/aws-cdk #34260, #22390, #23996).
 */
export function lambdaTask(scope: Construct, id: string, props: LambdaTaskProps): tasks.LambdaInvoke {
  const task = new tasks.LambdaInvoke(scope, id, {
    comment: props.comment,
    lambdaFunction: props.lambdaFunction,
    payload: sfn.TaskInput.fromObject(props.payload),
    outputPath: '$.Payload',
    retryOnServiceExceptions: true,
  });
  // Throttling at the configured concurrency is transient; the CDK default retries cover the rest.
  task.addRetry({
    errors: ['Lambda.TooManyRequestsException'],
    interval: Duration.seconds(2),
    maxAttempts: 6,
    backoffRate: 2,
  });
  return task;
}
