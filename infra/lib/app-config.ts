import * as fs from 'node:fs';

/**
 * `app-config.json`: the original ECR helper's deploy-time configuration, same keys.
 *
 * ```json
 * {
 *   "container_builder": {"source_uris": ["s3://my-bucket", "s3://other/path/to/source"]},
 *   "container_puller": {"source_aws_accounts": ["111122223333"], "allow_cross_region_pull": false,
 *                        "extra_namespaces": ["wave"]}
 * }
 * ```
 *
 * `extra_namespaces` is new: repository prefixes (beyond the built-in namespaces) the puller may
 * write to, for `--namespaces` rules and for images copied from other accounts' ECR (which keep
 * their path).
 */
export interface AppConfig {
  readonly containerBuilder: {
    /** S3 locations the builder may read image sources from. */
    readonly sourceUris: readonly S3Location[];
  };
  readonly containerPuller: {
    /** Accounts whose ECR private repositories the puller may read. */
    readonly sourceAwsAccounts: readonly string[];
    /** Whether reads from those accounts may cross regions (`*`) or stay in the stack's region. */
    readonly allowCrossRegionPull: boolean;
    /** Additional repository prefixes the puller may create and write. */
    readonly extraNamespaces: readonly string[];
  };
}

/** A parsed `s3://bucket[/prefix]` location. */
export interface S3Location {
  readonly uri: string;
  readonly bucket: string;
  /** Key prefix without leading or trailing `/`; empty for a whole bucket. */
  readonly prefix: string;
}

/** Every problem found in an app-config file, reported together. */
export class AppConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid app config ${source}:\n${problems.map((problem) => `  - ${problem}`).join('\n')}`);
    this.name = 'AppConfigError';
  }
}

export const DEFAULT_APP_CONFIG: AppConfig = {
  containerBuilder: { sourceUris: [] },
  containerPuller: { sourceAwsAccounts: [], allowCrossRegionPull: false, extraNamespaces: [] },
};

const TOP_LEVEL_KEYS = ['container_builder', 'container_puller'];
const BUILDER_KEYS = ['source_uris'];
const PULLER_KEYS = ['source_aws_accounts', 'allow_cross_region_pull', 'extra_namespaces'];

// S3 bucket naming rules (general purpose buckets): 3-63 characters of lower-case letters,
// digits, dots and hyphens, beginning and ending with a letter or digit.
const BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const ACCOUNT_ID = /^\d{12}$/;
// One or more ECR repository-name components, as ECR accepts them.
const REPOSITORY_PREFIX = /^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$/;

/** Validates a parsed JSON value as an app config; throws {@link AppConfigError} listing every problem. */
export function parseAppConfig(value: unknown, source: string): AppConfig {
  const problems: string[] = [];
  if (!isPlainObject(value)) {
    throw new AppConfigError(source, [`the top level must be a JSON object, found ${describe(value)}`]);
  }
  reportUnknownKeys(value, TOP_LEVEL_KEYS, '', problems);

  let sourceUris: S3Location[] = [];
  const builder = value['container_builder'];
  if (builder !== undefined) {
    if (!isPlainObject(builder)) {
      problems.push(`container_builder must be an object, found ${describe(builder)}`);
    } else {
      reportUnknownKeys(builder, BUILDER_KEYS, 'container_builder.', problems);
      sourceUris = stringList(builder, 'source_uris', 'container_builder', problems).flatMap((uri, index) => {
        const parsed = parseS3Uri(uri);
        if (typeof parsed === 'string') {
          problems.push(`container_builder.source_uris[${index}] ${JSON.stringify(uri)}: ${parsed}`);
          return [];
        }
        return [parsed];
      });
    }
  }

  let sourceAwsAccounts: string[] = [];
  let allowCrossRegionPull = false;
  let extraNamespaces: string[] = [];
  const puller = value['container_puller'];
  if (puller !== undefined) {
    if (!isPlainObject(puller)) {
      problems.push(`container_puller must be an object, found ${describe(puller)}`);
    } else {
      reportUnknownKeys(puller, PULLER_KEYS, 'container_puller.', problems);
      sourceAwsAccounts = stringList(puller, 'source_aws_accounts', 'container_puller', problems).filter(
        (account, index) => {
          if (ACCOUNT_ID.test(account)) return true;
          problems.push(
            `container_puller.source_aws_accounts[${index}] ${JSON.stringify(account)}: an AWS account id is exactly 12 digits`,
          );
          return false;
        },
      );
      const crossRegion = puller['allow_cross_region_pull'];
      if (crossRegion !== undefined) {
        if (typeof crossRegion === 'boolean') {
          allowCrossRegionPull = crossRegion;
        } else {
          problems.push(`container_puller.allow_cross_region_pull must be true or false, found ${describe(crossRegion)}`);
        }
      }
      extraNamespaces = stringList(puller, 'extra_namespaces', 'container_puller', problems).filter(
        (namespace, index) => {
          if (REPOSITORY_PREFIX.test(namespace)) return true;
          problems.push(
            `container_puller.extra_namespaces[${index}] ${JSON.stringify(namespace)}: not an ECR repository prefix ` +
              '(lower-case letters, digits, and . _ - / between them)',
          );
          return false;
        },
      );
    }
  }

  if (problems.length > 0) throw new AppConfigError(source, problems);
  return {
    containerBuilder: { sourceUris: dedupeBy(sourceUris, (location) => `${location.bucket}/${location.prefix}`) },
    containerPuller: {
      sourceAwsAccounts: [...new Set(sourceAwsAccounts)],
      allowCrossRegionPull,
      extraNamespaces: [...new Set(extraNamespaces)],
    },
  };
}

/**
 * Reads and validates the app config at `path`. A missing file is the default configuration when
 * `required` is false (the file is optional, as in the original tool) and an error otherwise.
 */
export function loadAppConfig(path: string, required: boolean): AppConfig {
  let text: string;
  try {
    text = fs.readFileSync(path, 'utf8');
  } catch (error) {
    if (!required && (error as NodeJS.ErrnoException).code === 'ENOENT') return DEFAULT_APP_CONFIG;
    throw new AppConfigError(path, [`cannot read the file: ${(error as Error).message}`]);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new AppConfigError(path, [`not valid JSON: ${(error as Error).message}`]);
  }
  return parseAppConfig(value, path);
}

/** Parses `s3://bucket[/prefix]`; returns the reason as a string when the URI is unusable. */
export function parseS3Uri(uri: string): S3Location | string {
  const match = /^s3:\/\/([^/]*)(?:\/(.*))?$/.exec(uri);
  if (!match) return 'an S3 URI starts with s3:// followed by a bucket name';
  const bucket = match[1] ?? '';
  if (!BUCKET_NAME.test(bucket) || bucket.includes('..') || /^\d+\.\d+\.\d+\.\d+$/.test(bucket)) {
    return `${JSON.stringify(bucket)} is not a valid S3 bucket name (3-63 lower-case letters, digits, dots, hyphens)`;
  }
  const prefix = (match[2] ?? '').replace(/\/+$/, '');
  // Wildcards would silently widen the IAM resources built from the prefix.
  if (/[*?]/.test(prefix)) return 'wildcards (* ?) are not allowed in the key prefix';
  if (prefix.startsWith('/') || prefix.includes('//')) return 'the key prefix has an empty path segment';
  return { uri, bucket, prefix };
}

function stringList(object: Record<string, unknown>, key: string, parent: string, problems: string[]): string[] {
  const value = object[key];
  if (value === undefined) return [];
  if (!Array.isArray(value)) {
    problems.push(`${parent}.${key} must be a list of strings, found ${describe(value)}`);
    return [];
  }
  return value.filter((item, index) => {
    if (typeof item === 'string') return true;
    problems.push(`${parent}.${key}[${index}] must be a string, found ${describe(item)}`);
    return false;
  });
}

function reportUnknownKeys(object: Record<string, unknown>, known: string[], path: string, problems: string[]): void {
  for (const key of Object.keys(object)) {
    if (!known.includes(key)) {
      problems.push(`unknown key ${path}${key} (known keys here: ${known.join(', ')})`);
    }
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return `${typeof value} ${JSON.stringify(value)}`;
}

function dedupeBy<T>(items: T[], key: (item: T) => string): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const itemKey = key(item);
    if (seen.has(itemKey)) return false;
    seen.add(itemKey);
    return true;
  });
}
