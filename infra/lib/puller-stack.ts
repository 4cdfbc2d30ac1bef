import * as codebuild from 'aws-cdk-lib/aws-codebuild';
import * as ecr from 'aws-cdk-lib/aws-ecr';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as tasks from 'aws-cdk-lib/aws-stepfunctions-tasks';
import { CfnOutput, Duration, Stack, StackProps } from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { Construct } from 'constructs';
import {
  BUILT_IN_NAMESPACES,
  CLI_BINARY_NAME,
  CREATED_BY_TAG,
  OMICS_PULL_ACTIONS,
  OMICS_SERVICE_PRINCIPAL,
  OMICS_STATEMENT_SID,
  PULLER_STATE_MACHINE_NAME,
  PULL_PROJECT_NAME,
  PULL_THROUGH_CACHE_RULES,
} from './constants';
import {
  acknowledgeRepositoryWildcards,
  applyPolicyStatements,
  imageCopyStatements,
  repositoryArns,
} from './ecr-permissions';
import { CODEBUILD_CONCURRENCY_RETRY, HelperProject } from './helper-project';
import { lambdaTask } from './lambda-task';
import { ITEM_STATUS, ManifestStateMachine } from './manifest-state-machine';
import { RustFunction } from './rust-function';
import { DeploySettings } from './settings';

export interface ContainerPullerStackProps extends StackProps {
  readonly settings: DeploySettings;
}

/** The CodeBuild fallback's command: the same copy as the Lambda, without the Lambda's limits. */
export const PULL_FALLBACK_COMMAND = `./${CLI_BINARY_NAME} pull --single "$IMAGE" --format json`;

/**
 * `OmxEcrHelper-ContainerPuller`: the `omx-container-puller` state machine (Lambda copy with a
 * CodeBuild fallback for images too large for Lambda), the pull-through-cache rules and creation
 * templates, and the EventBridge rule that gives new repositories the HealthOmics policy.
 */
export class ContainerPullerStack extends Stack {
  readonly stateMachine: sfn.StateMachine;
  readonly pullProject: codebuild.Project;
  /** The ECR private registry host images land in. */
  readonly registryUri: string;

  constructor(scope: Construct, id: string, props: ContainerPullerStackProps) {
    super(scope, id, props);
    const { settings } = props;
    const puller = settings.appConfig.containerPuller;
    const namespaces = [...BUILT_IN_NAMESPACES, ...puller.extraNamespaces];
    this.registryUri = `${this.account}.dkr.ecr.${this.region}.${this.urlSuffix}`;

    // Repository policies: pull-through cache and omx-ecr-helper's own CreateRepository calls.
    this.addPullThroughCache(settings.creationTemplates);
    const applyPolicy = new RustFunction(this, 'ApplyPolicy', {
      zip: settings.assets.lambdaZips.applyPolicy,
      description: 'omx-ecr-helper: merges the HealthOmics pull statement into new ECR repositories\' policies',
      timeout: Duration.seconds(30),
      memorySize: 128,
      statements: applyPolicyStatements(this, namespaces),
    });
    const createRepositoryRule = new events.Rule(this, 'RepositoryCreated', {
      description: 'ECR repositories created by omx-ecr-helper or by the pull-through cache',
      eventPattern: repositoryCreatedEventPattern(),
    });
    createRepositoryRule.addTarget(new targets.LambdaFunction(applyPolicy.function, { retryAttempts: 4 }));

    // The state machine's two ways to copy one image.
    const copyStatements = () =>
      imageCopyStatements(this, namespaces, puller.sourceAwsAccounts, puller.allowCrossRegionPull);
    const pullImage = new RustFunction(this, 'PullImage', {
      zip: settings.assets.lambdaZips.pullImage,
      description: 'omx-ecr-helper: copies one container image into ECR private (omx-container-puller task)',
      timeout: Duration.minutes(15),
      memorySize: 1024,
      statements: copyStatements(),
    });
    const fallback = new HelperProject(this, 'PullFallback', {
      projectName: PULL_PROJECT_NAME,
      description: 'omx-ecr-helper: copies container images too large for the Lambda into ECR private',
      cliBinary: settings.assets.cliBinary,
      commands: [PULL_FALLBACK_COMMAND],
      environmentVariables: { IMAGE: '' },
      // The copy engine speaks the registry API itself: no Docker daemon, so no privileged mode.
      privileged: false,
      computeType: codebuild.ComputeType.SMALL,
      timeout: Duration.hours(2),
      statements: copyStatements(),
    });
    this.pullProject = fallback.project;
    for (const role of [applyPolicy.role, pullImage.role, fallback.project.role!]) acknowledgeRepositoryWildcards(role);

    this.stateMachine = new ManifestStateMachine(this, 'Puller', {
      stateMachineName: PULLER_STATE_MACHINE_NAME,
      comment: 'Copies the container images of {"manifest": [...]} into ECR private repositories for AWS HealthOmics',
      resultsKey: 'images',
      failureError: 'OmxImagesFailed',
      itemNoun: 'image',
      itemSelector: { 'image.$': '$$.Map.Item.Value' },
      maxConcurrency: settings.maxConcurrency,
      itemProcessor: this.pullOneImage(pullImage, fallback),
    }).stateMachine;

    new CfnOutput(this, 'PullerStateMachineArn', {
      description: 'Start with: aws stepfunctions start-execution --state-machine-arn ARN --input file://manifest.json',
      value: this.stateMachine.stateMachineArn,
    });
    new CfnOutput(this, 'RegistryUri', {
      description: 'The ECR private registry the images are copied into',
      value: this.registryUri,
    });
  }

  /**
   * One image: the Lambda copies it (or finds it already there); an image too large for the
   * Lambda is copied by the CodeBuild project instead. Every path ends in a result object
   * `{"image", "status", "target", "digest", "message", "too_large"}` (without `target` and
   * `digest` when the Lambda call itself failed).
   */
  private pullOneImage(pullImage: RustFunction, fallback: HelperProject): sfn.IChainable {
    const lambdaFailed = new sfn.Pass(this, 'Pull Lambda Failed', {
      parameters: {
        'image.$': '$.image',
        status: ITEM_STATUS.failed,
        'message.$': "States.Format('omx-pull-image failed: {}: {}', $.error.Error, $.error.Cause)",
        too_large: false,
      },
    });
    const copyTask = lambdaTask(this, 'Copy Image', {
      comment: 'omx-pull-image: copies the image, or reports it SKIPPED (already there), FAILED, or too_large',
      lambdaFunction: pullImage.function,
      // Exactly the fields PullImageRequest deserializes (it refuses unknown ones).
      payload: { image: sfn.JsonPath.stringAt('$.image') },
    });
    copyTask.addCatch(lambdaFailed, { errors: [sfn.Errors.ALL], resultPath: '$.error' });

    const copiedByCodeBuild = new sfn.Pass(this, 'Copied By CodeBuild', {
      parameters: {
        'image.$': '$.image',
        status: ITEM_STATUS.succeeded,
        'target.$': '$.target',
        'digest.$': '$.digest',
        'message.$': "States.Format('copied by CodeBuild build {}', $.build.id)",
        too_large: true,
      },
    });
    const codeBuildFailed = new sfn.Pass(this, 'CodeBuild Copy Failed', {
      parameters: {
        'image.$': '$.image',
        status: ITEM_STATUS.failed,
        'target.$': '$.target',
        'digest.$': '$.digest',
        message: sfn.JsonPath.format(
          `CodeBuild project ${PULL_PROJECT_NAME} failed ({}); its logs are in CloudWatch log group ${fallback.logGroup.logGroupName}`,
          sfn.JsonPath.stringAt('$.error.Error'),
        ),
        too_large: true,
      },
    });
    const codeBuildCopy = new tasks.CodeBuildStartBuild(this, 'Copy Image With CodeBuild', {
      comment: `${PULL_PROJECT_NAME} runs: ${PULL_FALLBACK_COMMAND}`,
      project: fallback.project,
      integrationPattern: sfn.IntegrationPattern.RUN_JOB,
      environmentVariablesOverride: {
        IMAGE: { type: codebuild.BuildEnvironmentVariableType.PLAINTEXT, value: sfn.JsonPath.stringAt('$.image') },
      },
      resultSelector: { 'id.$': '$.Build.Id', 'status.$': '$.Build.BuildStatus' },
      resultPath: '$.build',
    });
    codeBuildCopy.addRetry(CODEBUILD_CONCURRENCY_RETRY);
    codeBuildCopy.addCatch(codeBuildFailed, { errors: [sfn.Errors.ALL], resultPath: '$.error' });
    codeBuildCopy.next(copiedByCodeBuild);

    const tooLarge = new sfn.Choice(this, 'Too Large For Lambda?')
      .when(
        sfn.Condition.and(sfn.Condition.isPresent('$.too_large'), sfn.Condition.booleanEquals('$.too_large', true)),
        codeBuildCopy,
      )
      .otherwise(new sfn.Pass(this, 'Copied By Lambda'));
    return copyTask.next(tooLarge);
  }

  /**
   * Pull-through-cache rules for quay.io and public.ecr.aws and, where the region has them,
   * creation templates giving the repositories they create the HealthOmics policy and tag from
   * the start (the EventBridge rule covers regions without templates).
   */
  private addPullThroughCache(creationTemplates: boolean): void {
    for (const rule of PULL_THROUGH_CACHE_RULES) {
      new ecr.CfnPullThroughCacheRule(this, `PullThroughCache-${rule.prefix}`, {
        ecrRepositoryPrefix: rule.prefix,
        upstreamRegistryUrl: rule.upstreamRegistryUrl,
      });
    }
    if (!creationTemplates) return;

    const prefixes = PULL_THROUGH_CACHE_RULES.map((rule) => rule.prefix);
    // Templates that set tags need a role ECR assumes to create and tag the repositories.
    const templateRole = new iam.Role(this, 'CreationTemplateRole', {
      description: 'omx-ecr-helper: lets ECR create and tag pull-through-cache repositories from the creation templates',
      assumedBy: new iam.ServicePrincipal('ecr.amazonaws.com', {
        conditions: { StringEquals: { 'aws:SourceAccount': this.account } },
      }),
    });
    templateRole.addToPolicy(
      new iam.PolicyStatement({
        sid: 'CreateTemplatedRepositories',
        actions: ['ecr:CreateRepository', 'ecr:TagResource'],
        resources: repositoryArns(this, prefixes),
      }),
    );
    NagSuppressions.addResourceSuppressions(
      templateRole,
      [
        {
          id: 'AwsSolutions-IAM5',
          reason:
            'ECR names pull-through-cache repositories after the upstream image path, so the role covers every repository under the quay/ and ecr-public/ prefixes only.',
          appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ecr:.*:repository/(quay|ecr-public)/\\*$/' }],
        },
      ],
      true,
    );
    for (const prefix of prefixes) {
      new ecr.CfnRepositoryCreationTemplate(this, `CreationTemplate-${prefix}`, {
        prefix,
        description: `omx-ecr-helper: ${prefix}/ pull-through-cache repositories readable by AWS HealthOmics`,
        appliedFor: ['PULL_THROUGH_CACHE'],
        customRoleArn: templateRole.roleArn,
        repositoryPolicy: JSON.stringify(omicsRepositoryPolicy()),
        resourceTags: [{ key: CREATED_BY_TAG.key, value: CREATED_BY_TAG.value }],
      });
    }
  }
}

/** The repository policy HealthOmics needs, as the Rust `omx-core` policy module writes it. */
export function omicsRepositoryPolicy(): Record<string, unknown> {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: OMICS_STATEMENT_SID,
        Effect: 'Allow',
        Principal: { Service: OMICS_SERVICE_PRINCIPAL },
        Action: [...OMICS_PULL_ACTIONS],
      },
    ],
  };
}

/**
 * Successful ECR `CreateRepository` calls recorded by CloudTrail that either carry the
 * `createdBy=omx-ecr-helper` tag (omx-ecr-helper's own calls) or were made by ECR itself (the
 * pull-through cache creating a repository). CloudTrail keeps the request's tag member names as
 * sent, so both `Key/Value` and `key/value` spellings match.
 */
export function repositoryCreatedEventPattern(): events.EventPattern {
  return {
    source: ['aws.ecr'],
    detailType: ['AWS API Call via CloudTrail', 'AWS Service Event via CloudTrail'],
    detail: {
      eventSource: ['ecr.amazonaws.com'],
      eventName: ['CreateRepository'],
      errorCode: [{ exists: false }],
      $or: [
        { eventType: ['AwsServiceEvent'] },
        {
          eventType: ['AwsApiCall'],
          requestParameters: { tags: { Key: [CREATED_BY_TAG.key], Value: [CREATED_BY_TAG.value] } },
        },
        {
          eventType: ['AwsApiCall'],
          requestParameters: { tags: { key: [CREATED_BY_TAG.key], value: [CREATED_BY_TAG.value] } },
        },
      ],
    },
  };
}
