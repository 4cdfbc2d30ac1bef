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

/** Map Run label: names the child executions `<state machine>/ManifestItems:<id>`. */
export const MAP_RUN_LABEL = 'ManifestItems';

/**
 * A state machine over `{"manifest": [...]}`: a distributed Map runs `itemProcessor` for each item
 * as a child execution, then the results are checked. It FAILS (error `failureError`, cause
 * listing the failed items) when any item's status is FAILED, and otherwise outputs
 * `{"<resultsKey>": [...every item's result], "total": <number of items>}`.
 *
 * Distributed for every manifest size: each item's events go to its own child execution's
 * history, so the parent never nears the 25,000-event history limit (an inline Map adds about a
 * dozen events per item, many more with the CodeBuild retries), and more than 40 items may run at
 * once. Child executions are STANDARD because an item may wait up to 15 minutes for the Lambda and
 * hours for CodeBuild (EXPRESS ends after 5 minutes and cannot wait on `startBuild.sync`).
 * What still bounds one execution is Step Functions' 256 KiB payload limit on the results list.
 */
export class ManifestStateMachine extends Construct {
  readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string, props: ManifestStateMachineProps) {
    super(scope, id);
    const results = `$.${props.resultsKey}`;

    // The results replace the state: the manifest is not carried along, so the 256 KiB payload
    // limit leaves as much room as possible for the results. That is what an absent ResultPath
    // means (the States Language spec's default is "$"); it is left out rather than written as
    // "$" because some interpreters (aws-local-stepfunctions 3.0.0) store the result under a key
    // named "$" instead.
    const eachItem = new sfn.DistributedMap(this, 'Manifest Items', {
      comment: `Processes each manifest entry as a child execution, at most ${props.maxConcurrency} at a time`,
      itemsPath: '$.manifest',
      itemSelector: props.itemSelector,
      maxConcurrency: props.maxConcurrency,
      mapExecutionType: sfn.StateMachineType.STANDARD,
      label: MAP_RUN_LABEL,
    });
    eachItem.itemProcessor(props.itemProcessor);

    // Only wildcard paths are used on the results list: a JSONPath filter that matches nothing is
    // an error (States.Runtime), so the FAILED filter runs only once a failure is known to exist.
    const collect = new sfn.Pass(this, 'Collect Results', {
      parameters: { [`${props.resultsKey}.$`]: '$', 'statuses.$': '$[*].status' },
    });
    const check = new sfn.Pass(this, 'Check Results', {
      parameters: {
        [`${props.resultsKey}.$`]: results,
        'total.$': `States.ArrayLength(${results})`,
        'any_failed.$': `States.ArrayContains($.statuses, '${ITEM_STATUS.failed}')`,
      },
    });
    // The cause is composed here, not in the Fail state: a Fail state's CausePath may use only
    // States.Format, JsonToString, ArrayGetItem, Base64Encode/Decode, Hash and UUID (Step
    // Functions developer guide, "Fail workflow state"), not the ArrayLength the count needs.
    const failedItems = `${results}[?(@.status == '${ITEM_STATUS.failed}')]`;
    const listFailures = new sfn.Pass(this, 'List Failures', {
      parameters: { 'failed.$': failedItems, 'total.$': '$.total' },
    });
    const describeFailures = new sfn.Pass(this, 'Describe Failures', {
      parameters: {
        cause: sfn.JsonPath.format(
          `{} of {} ${props.itemNoun}(s) failed: {}`,
          sfn.JsonPath.arrayLength(sfn.JsonPath.listAt('$.failed')),
          sfn.JsonPath.stringAt('$.total'),
          sfn.JsonPath.jsonToString(sfn.JsonPath.objectAt('$.failed')),
        ),
      },
    });
    const fail = new sfn.Fail(this, `Some ${capitalize(props.itemNoun)}s Failed`, {
      error: props.failureError,
      causePath: '$.cause',
    });
    const report = new sfn.Pass(this, 'Report Results', {
      parameters: { [`${props.resultsKey}.$`]: results, 'total.$': '$.total' },
    });
    const anyFailed = new sfn.Choice(this, `Any ${capitalize(props.itemNoun)} Failed?`)
      .when(sfn.Condition.booleanEquals('$.any_failed', true), listFailures.next(describeFailures).next(fail))
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
    // CDK attaches the distributed Map's own permissions as a separate policy of the role.
    const distributedMapPolicy = this.stateMachine.node.findChild('DistributedMapPolicy');
    const executionArn = String.raw`arn:<AWS::Partition>:states:[a-z0-9-]+:\d{12}:execution:\{"Fn::Select":\[6,\{"Fn::Split":\[":",\{"Ref":"\w+StateMachine[0-9A-F]{8}"\}\]\}\]\}`;
    NagSuppressions.addResourceSuppressions(distributedMapPolicy, [
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'The distributed Map describes and stops executions of this state machine only, whose ids Step Functions picks at run time (execution:<this state machine>:*).',
        appliesTo: [{ regex: `/^Resource::${executionArn}:\\*$/` }],
      },
      {
        id: 'AwsSolutions-IAM5',
        reason: `Redriving a failed execution restarts the Map Run's child executions, which Step Functions names at run time under this state machine and the "${MAP_RUN_LABEL}" label only.`,
        appliesTo: [{ regex: `/^Resource::${executionArn}\\/${MAP_RUN_LABEL}:\\*$/` }],
      },
    ]);
  }
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
