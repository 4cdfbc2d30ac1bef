import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import { BUILDER_STATE_MACHINE_NAME, BUILD_PROJECT_NAME, CLI_BINARY_NAME } from './constants';
import {
  ECR_PUSH_ACTIONS,
  ECR_READ_ACTIONS,
  ECR_REPOSITORY_SETUP_ACTIONS,
  allOwnRepositoriesArn,
  authorizationTokenStatement,
  s3SourceReadStatements,
} from './ecr-permissions';
import { CODEBUILD_CONCURRENCY_RETRY, HelperProject } from './helper-project';
import { lambdaTask } from './lambda-task';
import { ITEM_STATUS, ManifestStateMachine } from './manifest-state-machine';
import { RustFunction } from './rust-function';
import { DeploySettings } from './settings';

export interface ContainerBuilderStackProps extends StackProps {
  readonly settings: DeploySettings;
}

/** The build project's command; the state machine sets the three variables per manifest item. */
export const BUILD_COMMAND =
  `./${CLI_BINARY_NAME} build --source "$SOURCE_URI" --target "$TARGET_IMAGE" ` +
  '--engine docker --format json';

/**
 * `OmxEcrHelper-ContainerBuilder`: the `omx-container-builder` state machine, which builds images
 * from sources staged in S3 (the `container_builder.source_uris` of app-config.json) and pushes
 * them to ECR private, skipping those whose source has not changed.
 */
export class ContainerBuilderStack extends Stack {
  readonly stateMachine: sfn.StateMachine;
  readonly buildProject: codebuild.Project;

  constructor(scope: Construct, id: string, props: ContainerBuilderStackProps) {
    super(scope, id, props);
    const { settings } = props;
    const sources = settings.appConfig.containerBuilder.sourceUris;
    // Targets are named freely by the manifest (`foo:omics`, `team/foo:1`), so the builder works
    // on any repository of this account and region, and nowhere else.
    const ownRepositories = allOwnRepositoriesArn(this);

    const prepare = new RustFunction(this, 'BuildPrepare', {
      zip: settings.assets.lambdaZips.buildPrepare,
      description: 'omx-ecr-helper: checks a build source against the existing image (omx-container-builder task)',
      timeout: Duration.minutes(5),
      memorySize: 512,
      statements: [
        authorizationTokenStatement(),
        new iam.PolicyStatement({ sid: 'ReadTargetRepositories', actions: ECR_READ_ACTIONS, resources: [ownRepositories] }),
        ...s3SourceReadStatements(this, sources),
      ],
    });
    const build = new HelperProject(this, 'Build', {
      projectName: BUILD_PROJECT_NAME,
      description: 'omx-ecr-helper: builds container images from S3 sources and pushes them to ECR private',
      cliBinary: settings.assets.cliBinary,
      commands: [BUILD_COMMAND],
      environmentVariables: { SOURCE_URI: '', TARGET_IMAGE: '', SOURCE_DIGEST: '', OMX_BUILD_ENGINE: 'docker' },
      // Dockerfile RUN steps need the namespaces and mounts only a privileged build gets; the
      // image's own Docker engine runs them (buildah would need the same privileges here).
      privileged: true,
      computeType: codebuild.ComputeType.MEDIUM,
      timeout: Duration.hours(2),
      statements: [
        authorizationTokenStatement(),
        new iam.PolicyStatement({
          sid: 'TargetRepositories',
          actions: [...ECR_READ_ACTIONS, ...ECR_PUSH_ACTIONS, ...ECR_REPOSITORY_SETUP_ACTIONS],
          resources: [ownRepositories],
        }),
        ...s3SourceReadStatements(this, sources),
      ],
    });
    this.buildProject = build.project;
    NagSuppressions.addResourceSuppressions(build.project, [
      {
        id: 'AwsSolutions-CB3',
        reason:
          'Building arbitrary Dockerfiles (RUN steps) needs a container engine with namespaces and mounts, which CodeBuild grants only in privileged mode. The project runs only omx-ecr-helper on sources from the configured S3 locations.',
      },
    ]);

    for (const construct of [prepare.role, build.project.role!]) {
      NagSuppressions.addResourceSuppressions(
        construct,
        [
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'Build targets are named by the manifest at run time, so access covers the repositories of this account and region (repository/*), never other accounts or regions.',
            appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ecr:[a-z0-9-]+:\\d{12}:repository/\\*$/' }],
          },
          {
            id: 'AwsSolutions-IAM5',
            reason:
              'Image sources are S3 prefixes listed in app-config.json container_builder.source_uris; the wildcard covers only objects under those prefixes.',
            appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:s3:::.+\\/\\*$/' }],
          },
        ],
        true,
      );
    }
    NagSuppressions.addResourceSuppressions(
      [prepare.role, build.project.role!],
      [
        {
          id: 'AwsSolutions-IAM5',
          reason: 'ecr:GetAuthorizationToken has no resource type; IAM accepts it only with Resource "*".',
          appliesTo: ['Resource::*'],
        },
      ],
      true,
    );

    this.stateMachine = new ManifestStateMachine(this, 'Builder', {
      stateMachineName: BUILDER_STATE_MACHINE_NAME,
      comment:
        'Builds the container images of {"manifest": [{"source_uri", "target_image"}]} from S3 sources into ECR private',
      resultsKey: 'builds',
      failureError: 'OmxBuildsFailed',
      itemNoun: 'build',
      // Only the two fields of a manifest entry reach the iteration (and so the Lambda). An entry
      // without one of them fails the execution (States.Runtime: the path matches nothing);
      // `omx-ecr-helper submit` checks entries before it starts one.
      itemSelector: {
        'source_uri.$': '$$.Map.Item.Value.source_uri',
        'target_image.$': '$$.Map.Item.Value.target_image',
      },
      maxConcurrency: settings.maxConcurrency,
      itemProcessor: this.buildOneImage(prepare, build),
    }).stateMachine;

    new CfnOutput(this, 'BuilderStateMachineArn', {
      description: 'Start with: aws stepfunctions start-execution --state-machine-arn ARN --input file://build-manifest.json',
      value: this.stateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'RegistryUri', {
      description: 'The ECR private registry the images are pushed to',
      value: `${this.account}.dkr.ecr.${this.region}.${this.urlSuffix}`,
    });
  }

  /**
   * One manifest item: the Lambda resolves the target and compares the source with the image
   * already there; unless it says skip (or FAILED), CodeBuild builds and pushes. Every path ends
   * in `{"source_uri", "target_image", "target", "source_digest", "skip", "status", "message"}`
   * (without `target` and `source_digest` when the Lambda call itself failed).
   */
  private buildOneImage(prepare: RustFunction, build: HelperProject): sfn.IChainable {
    const prepareFailed = new sfn.Pass(this, 'Prepare Lambda Failed', {
      parameters: {
        'source_uri.$': '$.source_uri',
        'target_image.$': '$.target_image',
        skip: false,
        status: ITEM_STATUS.failed,
        'message.$': "States.Format('omx-build-prepare failed: {}: {}', $.error.Error, $.error.Cause)",
      },
    });
    const prepareTask = lambdaTask(this, 'Prepare Build', {
      comment: 'omx-build-prepare: resolves the target and decides whether the source changed',
      lambdaFunction: prepare.function,
      // Exactly the fields BuildPrepareRequest deserializes (it refuses unknown ones).
      payload: { source_uri: sfn.JsonPath.stringAt('$.source_uri'), target_image: sfn.JsonPath.stringAt('$.target_image') },
    });
    prepareTask.addCatch(prepareFailed, { errors: [sfn.Errors.ALL], resultPath: '$.error' });

    const built = new sfn.Pass(this, 'Built By CodeBuild', {
      parameters: {
        'source_uri.$': '$.source_uri',
        'target_image.$': '$.target_image',
        'target.$': '$.target',
        'source_digest.$': '$.source_digest',
        skip: false,
        status: ITEM_STATUS.succeeded,
        'message.$': "States.Format('built by CodeBuild build {}', $.build.id)",
      },
    });
    const buildFailed = new sfn.Pass(this, 'CodeBuild Build Failed', {
      parameters: {
        'source_uri.$': '$.source_uri',
        'target_image.$': '$.target_image',
        'target.$': '$.target',
        'source_digest.$': '$.source_digest',
        skip: false,
        status: ITEM_STATUS.failed,
        message: sfn.JsonPath.format(
          `CodeBuild project ${BUILD_PROJECT_NAME} failed ({}); its logs are in CloudWatch log group ${build.logGroup.logGroupName}`,
          sfn.JsonPath.stringAt('$.error.Error'),
        ),
      },
    });
    const plaintext = (path: string) => ({
      type: codebuild.BuildEnvironmentVariableType.PLAINTEXT,
      value: sfn.JsonPath.stringAt(path),
    });
    const buildTask = new tasks.CodeBuildStartBuild(this, 'Build Image With CodeBuild', {
      comment: `${BUILD_PROJECT_NAME} runs: ${BUILD_COMMAND}`,
      project: build.project,
      integrationPattern: sfn.IntegrationPattern.RUN_JOB,
      environmentVariablesOverride: {
        SOURCE_URI: plaintext('$.source_uri'),
        TARGET_IMAGE: plaintext('$.target'),
        SOURCE_DIGEST: plaintext('$.source_digest'),
      },
      resultSelector: { 'id.$': '$.Build.Id', 'status.$': '$.Build.BuildStatus' },
      resultPath: '$.build',
    });
    buildTask.addRetry(CODEBUILD_CONCURRENCY_RETRY);
    buildTask.addCatch(buildFailed, { errors: [sfn.Errors.ALL], resultPath: '$.error' });
    buildTask.next(built);

    const needsBuild = new sfn.Choice(this, 'Build Needed?')
      .when(
        sfn.Condition.and(sfn.Condition.isPresent('$.status'), sfn.Condition.stringEquals('$.status', ITEM_STATUS.failed)),
        new sfn.Pass(this, 'Prepare Reported Failure'),
      )
      .when(
        sfn.Condition.and(sfn.Condition.isPresent('$.skip'), sfn.Condition.booleanEquals('$.skip', true)),
        new sfn.Pass(this, 'Image Up To Date'),
      )
      .otherwise(buildTask);
    return prepareTask.next(needsBuild);
  }
}
