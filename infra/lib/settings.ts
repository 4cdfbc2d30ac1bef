import * as fs from 'node:fs';
import * as path from 'node:path';
import { AppConfig, loadAppConfig } from './app-config';
import { BUILD_ARTIFACTS_COMMAND, LAMBDA_BINARIES } from './constants';

/** The directory of this CDK app; relative paths in context are resolved against it. */
export const INFRA_DIR = path.resolve(__dirname, '..');

/** Everything the stacks are built from, read from CDK context, the environment and app-config.json. */
export interface DeploySettings {
  readonly account: string;
  readonly region: string;
  /** Maximum number of images processed at once by each state machine's Map. */
  readonly maxConcurrency: number;
  /** Whether to create ECR repository creation templates (not every region/partition has them). */
  readonly creationTemplates: boolean;
  readonly appConfig: AppConfig;
  readonly assets: RustAssets;
}

/** Paths of the compiled Rust artifacts the stacks upload. */
export interface RustAssets {
  /** `<lambdaDir>/<name>/bootstrap.zip` for each Lambda binary. */
  readonly lambdaZips: Readonly<Record<keyof typeof LAMBDA_BINARIES, string>>;
  /** The `omx-ecr-helper` CLI binary run by the CodeBuild projects. */
  readonly cliBinary: string;
}

/** A context value or environment setting that cannot be used. */
export class SettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SettingsError';
  }
}

/** Reads context values the way `-c key=value` delivers them (strings) or cdk.json does (JSON types). */
export type ContextReader = (key: string) => unknown;

export const DEFAULT_LAMBDA_DIR = '../target/lambda';
export const DEFAULT_CLI_BINARY = '../target/x86_64-unknown-linux-gnu/release/omx-ecr-helper';
export const DEFAULT_MAX_CONCURRENCY = 10;
// A distributed Map runs up to 10,000 child executions at once, but each one may invoke a Lambda:
// beyond the default Lambda quota of 1,000 concurrent executions per account and region, more
// would only be throttled (and compete with the account's other functions).
export const MAX_CONCURRENCY = 1000;

/**
 * Resolves the deploy settings. Account and region come from `-c account=... -c region=...`, else
 * from the CDK CLI's `CDK_DEFAULT_ACCOUNT` / `CDK_DEPLOY_REGION` / `CDK_DEFAULT_REGION`; they are
 * always explicit so that synthesis never looks anything up in AWS.
 */
export function readSettings(context: ContextReader, env: NodeJS.ProcessEnv = process.env): DeploySettings {
  const account = stringSetting(context('account')) ?? env.CDK_DEFAULT_ACCOUNT;
  const region = stringSetting(context('region')) ?? env.CDK_DEPLOY_REGION ?? env.CDK_DEFAULT_REGION;
  if (!account || !/^\d{12}$/.test(account)) {
    throw new SettingsError(
      account
        ? `account ${JSON.stringify(account)} is not a 12-digit AWS account id`
        : 'no AWS account: pass -c account=123456789012 (or run with AWS credentials so the CDK CLI sets CDK_DEFAULT_ACCOUNT)',
    );
  }
  if (!region || !/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) {
    throw new SettingsError(
      region
        ? `region ${JSON.stringify(region)} is not an AWS region name like us-east-1`
        : 'no AWS region: pass -c region=us-east-1 (or set CDK_DEPLOY_REGION / AWS_REGION)',
    );
  }

  const maxConcurrency = integerSetting('maxConcurrency', context('maxConcurrency'), DEFAULT_MAX_CONCURRENCY);
  if (maxConcurrency < 1 || maxConcurrency > MAX_CONCURRENCY) {
    throw new SettingsError(
      `maxConcurrency ${maxConcurrency} is out of range: 1 to ${MAX_CONCURRENCY} (the default Lambda concurrency quota) manifest entries at once`,
    );
  }
  const creationTemplates = booleanSetting('creationTemplates', context('creationTemplates'), true);

  const explicitConfig = stringSetting(context('appConfig')) ?? env.CDK_APP_CONFIG;
  const appConfig = loadAppConfig(resolvePath(explicitConfig ?? 'app-config.json'), explicitConfig !== undefined);

  const lambdaDir = resolvePath(stringSetting(context('lambdaDir')) ?? DEFAULT_LAMBDA_DIR);
  const cliBinary = resolvePath(stringSetting(context('cliBinary')) ?? DEFAULT_CLI_BINARY);
  const assets = requireRustAssets(lambdaDir, cliBinary);

  return { account, region, maxConcurrency, creationTemplates, appConfig, assets };
}

/**
 * Checks that every compiled artifact exists; the error names each missing file and the script
 * that builds them.
 */
export function requireRustAssets(lambdaDir: string, cliBinary: string): RustAssets {
  const lambdaZips = Object.fromEntries(
    Object.entries(LAMBDA_BINARIES).map(([key, name]) => [key, path.join(lambdaDir, name, 'bootstrap.zip')]),
  ) as Record<keyof typeof LAMBDA_BINARIES, string>;
  const missing: string[] = [];
  for (const zip of Object.values(lambdaZips)) {
    if (!isFile(zip)) missing.push(`${zip}  (or pass -c lambdaDir=DIR)`);
  }
  if (!isFile(cliBinary)) missing.push(`${cliBinary}  (or pass -c cliBinary=FILE)`);
  if (missing.length > 0) {
    throw new SettingsError(
      `the Rust binaries are not built; missing:\n${missing.map((line) => `  - ${line}`).join('\n')}\n` +
        `${BUILD_ARTIFACTS_COMMAND} builds all of them (infra/scripts/deploy runs it before deploying).`,
    );
  }
  return { lambdaZips, cliBinary };
}

function resolvePath(value: string): string {
  return path.resolve(INFRA_DIR, value);
}

function isFile(file: string): boolean {
  try {
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function stringSetting(value: unknown): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  return String(value);
}

function integerSetting(key: string, value: unknown, fallback: number): number {
  if (value === undefined || value === null || value === '') return fallback;
  const text = String(value);
  if (!/^\d+$/.test(text)) throw new SettingsError(`${key} must be a whole number, found ${JSON.stringify(value)}`);
  return Number(text);
}

function booleanSetting(key: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null || value === '') return fallback;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new SettingsError(`${key} must be true or false, found ${JSON.stringify(value)}`);
}
