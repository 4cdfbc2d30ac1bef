import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';

/** Status values every per-item result carries in its `status` field. */
export const ITEM_STATUS = { succeeded: 'SUCCEEDED', skipped: 'SKIPPED', failed: 'FAILED' } as const;

export interface ManifestStateMachineProps {
  readonly stateMachineName: string;
  /** Key of the output list holding one result per manifest item (`images`, `builds`). */
  readonly resultsKey: string;
  /** Error name of the Fail state reached when any item failed. */
  readonly failureError: string;
  /** What one manifest item is called in the failure cause (`image`, `build`). */
  readonly itemNoun: string;
  /** Shapes each manifest item into the iteration's input. */
  readonly itemSelector?: Record<string, unknown>;
  readonly maxConcurrency: number;
  /** The per-item work; every path must end with an object that has a `status`. */
  readonly itemProcessor: sfn.IChainable;
  readonly comment: string;
}

/**
 * A state machine over `{"manifest": [...]}`: an inline Map runs `itemProcessor` for each item,
 * then the results are checked. It FAILS (error `failureError`, cause listing the failed items)
 * when any item's status is FAILED, and otherwise outputs
 * `{"<resultsKey>": [...every item's result], "total": <number of items>}`.
 */
export class ManifestStateMachine extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: ManifestStateMachineProps) {
    super(scope, id);
    const results = `$.${props.resultsKey}`;

    const eachItem = new sfn.Map(this, 'Manifest Items', {
      comment: `Processes each manifest entry, at most ${props.maxConcurrency} at a time`,
      itemsPath: '$.manifest',
      itemSelector: props.itemSelector,
      maxConcurrency: props.maxConcurrency,
      resultPath: results,
    });
    eachItem.itemProcessor(props.itemProcessor);

    // Only wildcard paths are used on the results list: a JSONPath filter that matches nothing is
    // an error (States.Runtime), so the FAILED filter runs only once a failure is known to exist.
    const collect = new sfn.Pass(this, 'Collect Results', {
      parameters: { [`${props.resultsKey}.$`]: results, 'statuses.$': `${results}[*].status` },
    });
    const check = new sfn.Pass(this, 'Check Results', {
      parameters: {
        [`${props.resultsKey}.$`]: results,
        'total.$': `States.ArrayLength(${results})`,
        'any_failed.$': `States.ArrayContains($.statuses, '${ITEM_STATUS.failed}')`,
      },
    });
    const listFailures = new sfn.Pass(this, 'List Failures', {
      parameters: { 'failed.$': `${results}[?(@.status == '${ITEM_STATUS.failed}')]`, 'total.$': '$.total' },
    });
    const fail = new sfn.Fail(this, `Some ${capitalize(props.itemNoun)}s Failed`, {
      error: props.failureError,
      causePath: sfn.JsonPath.format(
        `{} of {} ${props.itemNoun}(s) failed: {}`,
        sfn.JsonPath.arrayLength(sfn.JsonPath.listAt('$.failed')),
        sfn.JsonPath.stringAt('$.total'),
        sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt('$.failed')),
      ),
    });
    const report = new sfn.Pass(this, 'Report Results', {
      parameters: { [`${props.resultsKey}.$`]: results, 'total.$': '$.total' },
    });
    const anyFailed = new sfn.Choice(this, `Any ${capitalize(props.itemNoun)} Failed?`)
      .when(sfn.Condition.booleanEquals('$.any_failed', true), listFailures.next(fail))
      .otherwise(report);

    const logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: props.stateMachineName,
      comment: props.comment,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromChainable(eachItem.next(collect).next(check).next(anyFailed)),
      logs: { destination: logGroup, level: sfn.LogLevel.ALL, includeExecutionData: true },
      tracingEnabled: true,
    });

    NagSuppressions.addResourceSuppressions(
      this.stateMachine.role,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'CloudWatch Logs delivery and X-Ray trace APIs have no resource-level permissions, so Step Functions logging and tracing need Resource "*".',
          appliesTo: ['Resource::*'],
        },
        {
          id: 'AwsSolutions-IAM5',
          reason: 'Invoking the task Lambda by any of its versions or aliases (the ":*" suffix of its own ARN), as CDK grants it.',
          appliesTo: [{ regex: '/^Resource::<.*Function[0-9A-F]{8}\\.Arn>:\\*$/' }],
        },
      ],
      true,
    );
  }
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
