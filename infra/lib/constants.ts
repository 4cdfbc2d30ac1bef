/**
 * Names shared by both stacks and by the Rust side of omx-ecr-helper. Changing one of these
 * changes what users type (`aws stepfunctions start-execution ...`) or what the Rust code expects.
 */

/** Tag every repository omx-ecr-helper creates carries; the EventBridge rule and IAM conditions key on it. */
export const CREATED_BY_TAG = { key: 'createdBy', value: 'omx-ecr-helper' } as const;

/** Statement id of the repository-policy statement that lets HealthOmics pull. */
export const OMICS_STATEMENT_SID = 'omics workflow access';

/** Service principal of AWS HealthOmics. */
export const OMICS_SERVICE_PRINCIPAL = 'omics.amazonaws.com';

/** The three ECR actions HealthOmics needs on a repository to run a task from it. */
export const OMICS_PULL_ACTIONS = [
  'ecr:GetDownloadUrlForLayer',
  'ecr:BatchGetImage',
  'ecr:BatchCheckLayerAvailability',
] as const;

/**
 * Repository namespaces the puller writes to (see the workspace README's namespace table).
 * Each one becomes an IAM resource `repository/<namespace>/*`.
 */
export const BUILT_IN_NAMESPACES = ['dockerhub', 'quay', 'ecr-public', 'gcr', 'gar', 'ghcr', 'mcr', 'nvcr'] as const;

/** ECR pull-through-cache rules: repository prefix -> upstream registry. */
export const PULL_THROUGH_CACHE_RULES = [
  { prefix: 'quay', upstreamRegistryUrl: 'quay.io' },
  { prefix: 'ecr-public', upstreamRegistryUrl: 'public.ecr.aws' },
] as const;

/** The Rust Lambda binaries (cargo-lambda output names). */
export const LAMBDA_BINARIES = {
  pullImage: 'omx-pull-image',
  buildPrepare: 'omx-build-prepare',
  applyPolicy: 'omx-apply-policy',
} as const;

/** File name of the Rust CLI inside the CodeBuild source bundle. */
export const CLI_BINARY_NAME = 'omx-ecr-helper';

export const PULLER_STATE_MACHINE_NAME = 'omx-container-puller';
export const BUILDER_STATE_MACHINE_NAME = 'omx-container-builder';
export const PULL_PROJECT_NAME = 'omx-container-pull';
export const BUILD_PROJECT_NAME = 'omx-container-build';

export const PULLER_STACK_ID = 'OmxEcrHelper-ContainerPuller';
export const BUILDER_STACK_ID = 'OmxEcrHelper-ContainerBuilder';

/** The script that builds every Rust artifact (infra/scripts/deploy runs it); quoted in every "asset missing" error. */
export const BUILD_ARTIFACTS_COMMAND = 'infra/scripts/build-artifacts';
