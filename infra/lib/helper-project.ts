import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { AssetHashType, DockerImage, Duration, Stack } from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { CLI_BINARY_NAME } from './constants';

/** Waits out CodeBuild's concurrent-build limit instead of failing the manifest item. */
export const CODEBUILD_CONCURRENCY_RETRY: sfn.RetryProps = {
  errors: ['CodeBuild.AccountLimitExceededException'],
  interval: Duration.seconds(30),
  maxAttempts: 8,
  backoffRate: 1.5,
};

export interface HelperProjectProps {
  readonly projectName: string;
  readonly description: string;
  /** The `omx-ecr-helper` binary to ship to the build as its source bundle. */
  readonly cliBinary: string;
  /** The build phase's commands; `./omx-ecr-helper` is in the working directory and executable. */
  readonly commands: string[];
  /** Variables every build starts with (the state machine overrides the per-item ones). */
  readonly environmentVariables: Record<string, string>;
  /** Needed only to run a Docker engine inside the build. */
  readonly privileged: boolean;
  readonly computeType: codebuild.ComputeType;
  readonly timeout: Duration;
  readonly statements: iam.PolicyStatement[];
}

/**
 * A CodeBuild project that runs the Rust `omx-ecr-helper` CLI on the Amazon Linux 2023 standard
 * image. The CLI reaches the build as a zip asset holding only the binary.
 */
export class HelperProject extends Construct {
  readonly project: codebuild.Project;
  readonly logGroup: logs.LogGroup;

  constructor(scope: Construct, id: string, props: HelperProjectProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const cliBundle = new s3assets.Asset(this, 'CliBundle', {
      path: path.dirname(props.cliBinary),
      // The hash is the binary's content: the rest of the directory (cargo's target dir) is ignored.
      assetHashType: AssetHashType.CUSTOM,
      assetHash: crypto.createHash('sha256').update(fs.readFileSync(props.cliBinary)).digest('hex'),
      bundling: {
        // Never used: the local bundler below always succeeds, so no container is started.
        image: DockerImage.fromRegistry('local-bundling-only'),
        local: {
          tryBundle(outputDir: string): boolean {
            const target = path.join(outputDir, CLI_BINARY_NAME);
            fs.copyFileSync(props.cliBinary, target);
            fs.chmodSync(target, 0o755);
            return true;
          },
        },
      },
    });

    this.logGroup = new logs.LogGroup(this, 'Logs', { retention: logs.RetentionDays.ONE_MONTH });
    this.project = new codebuild.Project(this, 'Project', {
      projectName: props.projectName,
      description: props.description,
      source: codebuild.Source.s3({ bucket: cliBundle.bucket, path: cliBundle.s3ObjectKey }),
      environment: {
        buildImage: codebuild.LinuxBuildImage.AMAZON_LINUX_2023_5,
        computeType: props.computeType,
        privileged: props.privileged,
        environmentVariables: Object.fromEntries(
          Object.entries({
            OMX_REGION: stack.region,
            OMX_ACCOUNT: stack.account,
            RUST_LOG: 'info',
            ...props.environmentVariables,
          }).map(([name, value]) => [name, { type: codebuild.BuildEnvironmentVariableType.PLAINTEXT, value }]),
        ),
      },
      timeout: props.timeout,
      logging: { cloudWatch: { logGroup: this.logGroup } },
      buildSpec: codebuild.BuildSpec.fromObject({
        version: '0.2',
        env: { shell: 'bash' },
        phases: {
          install: { commands: [`chmod +x ./${CLI_BINARY_NAME}`] },
          build: { commands: props.commands },
        },
      }),
    });
    for (const statement of props.statements) this.project.addToRolePolicy(statement);

    NagSuppressions.addResourceSuppressions(this.project, [
      {
        id: 'AwsSolutions-CB4',
        reason:
          'The project produces no artifacts and no cache; its only outputs are ECR images (encrypted by ECR) and CloudWatch logs, so a customer-managed KMS key would protect nothing.',
      },
    ]);
    NagSuppressions.addResourceSuppressions(
      this.project.role!,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'CodeBuild names log streams and test-report groups per build at run time; these wildcards cover only this project\'s own log group and report groups.',
          appliesTo: [
            { regex: '/^Resource::<.*Logs[0-9A-F]{8}\\.Arn>$/' },
            { regex: '/^Resource::arn:<AWS::Partition>:logs:.*:log-group:/aws/codebuild/<.*>:\\*$/' },
            { regex: '/^Resource::arn:<AWS::Partition>:codebuild:.*:report-group/<.*>-\\*$/' },
          ],
        },
        {
          id: 'AwsSolutions-IAM5',
          reason: 'Read access to the CDK asset holding the omx-ecr-helper binary (objects of the CDK asset bucket, as CDK grants it).',
          appliesTo: [{ regex: '/^Action::s3:(GetObject|GetBucket|List)\\*$/' }, { regex: '/^Resource::arn:<AWS::Partition>:s3:::cdk-.*\\/\\*$/' }],
        },
      ],
      true,
    );
  }
}
