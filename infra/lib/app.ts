import { App, Aspects, Tags } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ContainerBuilderStack } from './builder-stack';
import { BUILDER_STACK_ID, CREATED_BY_TAG, PULLER_STACK_ID } from './constants';
import { ContainerPullerStack } from './puller-stack';
import { DeploySettings } from './settings';

/** The stacks of one region. */
export interface OmxStacks {
  readonly puller: ContainerPullerStack;
  readonly builder: ContainerBuilderStack;
}

/**
 * Adds both stacks for `settings.account`/`settings.region` to `app` and runs the cdk-nag
 * AwsSolutions checks on them (violations are synthesis errors).
 */
export function addOmxStacks(app: App, settings: DeploySettings): OmxStacks {
  const env = { account: settings.account, region: settings.region };
  const puller = new ContainerPullerStack(app, PULLER_STACK_ID, {
    env,
    settings,
    description: 'omx-ecr-helper: copies public container images into ECR private for AWS HealthOmics',
  });
  const builder = new ContainerBuilderStack(app, BUILDER_STACK_ID, {
    env,
    settings,
    description: 'omx-ecr-helper: builds container images from S3 sources into ECR private for AWS HealthOmics',
  });
  // The builder's new repositories get their HealthOmics policy from the puller stack's
  // EventBridge rule, so deploying the builder alone deploys the puller too.
  builder.addStackDependency(puller, 'the EventBridge rule applying repository policies lives in the puller stack');
  for (const stack of [puller, builder]) Tags.of(stack).add(CREATED_BY_TAG.key, CREATED_BY_TAG.value);
  Aspects.of(app).add(new AwsSolutionsChecks({ verbose: true }));
  return { puller, builder };
}
