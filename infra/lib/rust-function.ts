import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Duration, Stack } from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';

export interface RustFunctionProps {
  /** cargo-lambda's `bootstrap.zip` for this function. */
  readonly zip: string;
  readonly description: string;
  readonly timeout: Duration;
  readonly memorySize: number;
  /** The function's permissions beyond writing its own logs. */
  readonly statements: iam.PolicyStatement[];
}

/**
 * A Rust Lambda (`provided.al2023`, x86_64) with its own role and log group: the role can write
 * that log group and do what `statements` say, nothing else (no AWS managed policy).
 */
export class RustFunction extends Construct {
  readonly function: lambda.Function;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: RustFunctionProps) {
    super(scope, id);
    const stack = Stack.of(this);
    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH });
    this.role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `${props.description} (Lambda role)`,
    });
    this.role.addToPolicy(
      new iam.PolicyStatement({
        sid: 'WriteOwnLogs',
        actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        resources: [this.logGroup.logGroupArn],
      }),
    );
    for (const statement of props.statements) this.role.addToPolicy(statement);

    this.function = new lambda.Function(this, 'Function', {
      description: props.description,
      runtime: lambda.Runtime.PROVIDED_AL2023,
      architecture: lambda.Architecture.X86_64,
      handler: 'bootstrap',
      code: lambda.Code.fromAsset(props.zip),
      timeout: props.timeout,
      memorySize: props.memorySize,
      role: this.role,
      logGroup: this.logGroup,
      environment: {
        OMX_REGION: stack.region,
        OMX_ACCOUNT: stack.account,
        RUST_LOG: 'info',
      },
    });

    NagSuppressions.addResourceSuppressions(
      this.role,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'The Lambda writes log streams it names at run time; the wildcard is only the stream part of its own log group ARN.',
          appliesTo: [{ regex: '/^Resource::<.*Logs[0-9A-F]{8}\\.Arn>$/' }],
        },
      ],
      true,
    );
  }
}
