import * as iam from 'aws-cdk-lib/aws-iam';
import { Stack } from 'aws-cdk-lib';
import { NagSuppressions } from 'cdk-nag';
import { IConstruct } from 'constructs';
import { CREATED_BY_TAG, OMICS_PULL_ACTIONS } from './constants';
import { S3Location } from './app-config';

/** Reading images: the HealthOmics pull actions plus the look-ups the copy engine makes first. */
export const ECR_READ_ACTIONS = [...OMICS_PULL_ACTIONS, 'ecr:DescribeImages', 'ecr:DescribeRepositories'];

/** Pushing images: blob uploads and manifest puts. */
export const ECR_PUSH_ACTIONS = [
  'ecr:InitiateLayerUpload',
  'ecr:UploadLayerPart',
  'ecr:CompleteLayerUpload',
  'ecr:PutImage',
];

/**
 * Creating a repository the way omx-ecr-helper does: tagged, with the HealthOmics policy merged
 * in. An existing repository's tags are read (ListTagsForResource) to tell whether it is one of
 * omx-ecr-helper's.
 */
export const ECR_REPOSITORY_SETUP_ACTIONS = [
  'ecr:CreateRepository',
  'ecr:TagResource',
  'ecr:ListTagsForResource',
  'ecr:GetRepositoryPolicy',
  'ecr:SetRepositoryPolicy',
];

/** Makes ECR fetch an image through a pull-through-cache rule (creating the repository if needed). */
export const ECR_PULL_THROUGH_CACHE_ACTIONS = ['ecr:BatchImportUpstreamImage'];

/** The statement every registry client needs: `ecr:GetAuthorizationToken` has no resource type. */
export function authorizationTokenStatement(): iam.PolicyStatement {
  return new iam.PolicyStatement({
    sid: 'EcrLogin',
    actions: ['ecr:GetAuthorizationToken'],
    resources: ['*'],
  });
}

/**
 * `arn:<partition>:ecr:<region>:<account>:repository/<prefix>/*` for each prefix, in the stack's
 * own account and region unless told otherwise.
 */
export function repositoryArns(
  scope: IConstruct,
  prefixes: readonly string[],
  where: { account?: string; region?: string } = {},
): string[] {
  const stack = Stack.of(scope);
  return prefixes.map(
    (prefix) =>
      `arn:${stack.partition}:ecr:${where.region ?? stack.region}:${where.account ?? stack.account}:repository/${prefix}/*`,
  );
}

/** Every repository of the stack's own account and region. */
export function allOwnRepositoriesArn(scope: IConstruct): string {
  const stack = Stack.of(scope);
  return `arn:${stack.partition}:ecr:${stack.region}:${stack.account}:repository/*`;
}

/**
 * What copying images into the namespaced repositories needs: read, push and set up those
 * repositories, import through the pull-through cache, and read (only read) the listed other
 * accounts' repositories.
 */
export function imageCopyStatements(
  scope: IConstruct,
  namespaces: readonly string[],
  sourceAccounts: readonly string[],
  allowCrossRegionPull: boolean,
): iam.PolicyStatement[] {
  const statements = [
    authorizationTokenStatement(),
    new iam.PolicyStatement({
      sid: 'NamespacedRepositories',
      actions: [
        ...ECR_READ_ACTIONS,
        ...ECR_PUSH_ACTIONS,
        ...ECR_REPOSITORY_SETUP_ACTIONS,
        ...ECR_PULL_THROUGH_CACHE_ACTIONS,
      ],
      resources: repositoryArns(scope, namespaces),
    }),
  ];
  if (sourceAccounts.length > 0) {
    statements.push(
      new iam.PolicyStatement({
        sid: 'CrossAccountSourceRepositories',
        actions: [...OMICS_PULL_ACTIONS, 'ecr:DescribeImages'],
        resources: sourceAccounts.map((account) =>
          repositoryArnAnyName(scope, account, allowCrossRegionPull ? '*' : Stack.of(scope).region),
        ),
      }),
    );
  }
  return statements;
}

/**
 * What applying the HealthOmics repository policy needs: on the namespaced repositories (which the
 * pull-through cache creates without omx-ecr-helper's tag when no creation template applies) and on
 * any repository of the account carrying the `createdBy=omx-ecr-helper` tag (builder targets).
 */
export function applyPolicyStatements(scope: IConstruct, namespaces: readonly string[]): iam.PolicyStatement[] {
  const actions = ['ecr:DescribeRepositories', 'ecr:GetRepositoryPolicy', 'ecr:SetRepositoryPolicy'];
  return [
    new iam.PolicyStatement({
      sid: 'NamespacedRepositoryPolicies',
      actions,
      resources: repositoryArns(scope, namespaces),
    }),
    new iam.PolicyStatement({
      sid: 'TaggedRepositoryPolicies',
      actions,
      resources: [allOwnRepositoriesArn(scope)],
      conditions: { StringEquals: { [`aws:ResourceTag/${CREATED_BY_TAG.key}`]: CREATED_BY_TAG.value } },
    }),
  ];
}

/**
 * Read-only access to the configured S3 source locations: objects under each prefix, and listing
 * limited to those prefixes.
 */
export function s3SourceReadStatements(scope: IConstruct, locations: readonly S3Location[]): iam.PolicyStatement[] {
  if (locations.length === 0) return [];
  const partition = Stack.of(scope).partition;
  const objectArns = locations.flatMap((location) =>
    location.prefix === ''
      ? [`arn:${partition}:s3:::${location.bucket}/*`]
      : [`arn:${partition}:s3:::${location.bucket}/${location.prefix}`, `arn:${partition}:s3:::${location.bucket}/${location.prefix}/*`],
  );
  const statements = [
    new iam.PolicyStatement({ sid: 'ReadSourceObjects', actions: ['s3:GetObject'], resources: objectArns }),
  ];
  const buckets = [...new Set(locations.map((location) => location.bucket))];
  buckets.forEach((bucket, index) => {
    const prefixes = locations.filter((location) => location.bucket === bucket).map((location) => location.prefix);
    const wholeBucket = prefixes.includes('');
    statements.push(
      new iam.PolicyStatement({
        sid: `ListSourceBucket${index}`,
        actions: ['s3:ListBucket'],
        resources: [`arn:${partition}:s3:::${bucket}`],
        conditions: wholeBucket
          ? undefined
          : { StringLike: { 's3:prefix': prefixes.flatMap((prefix) => [prefix, `${prefix}/*`]) } },
      }),
    );
  });
  return statements;
}

function repositoryArnAnyName(scope: IConstruct, account: string, region: string): string {
  return `arn:${Stack.of(scope).partition}:ecr:${region}:${account}:repository/*`;
}

/**
 * The cdk-nag acknowledgements the statements above need on the role (or construct owning it)
 * that holds them, one per kind of wildcard, each with why it is as narrow as IAM allows.
 */
export function acknowledgeRepositoryWildcards(construct: IConstruct): void {
  NagSuppressions.addResourceSuppressions(
    construct,
    [
      {
        id: 'AwsSolutions-IAM5',
        reason: 'ecr:GetAuthorizationToken has no resource type; IAM accepts it only with Resource "*".',
        appliesTo: ['Resource::*'],
      },
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'Repository names under a namespace come from the images being copied (<namespace>/<upstream path>), so access is granted per namespace prefix of this account and region.',
        appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ecr:[a-z0-9-]+:\\d{12}:repository\\/[a-z0-9._\\/-]+\\/\\*$/' }],
      },
      {
        id: 'AwsSolutions-IAM5',
        reason:
          'Read-only (pull) access to any repository of an account listed in app-config.json container_puller.source_aws_accounts; the images to copy are named at run time.',
        appliesTo: [{ regex: '/^Resource::arn:<AWS::Partition>:ecr:([a-z0-9-]+|\\*):\\d{12}:repository\\/\\*$/' }],
      },
    ],
    true,
  );
}
