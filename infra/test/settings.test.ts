import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { AppConfigError } from '../lib/app-config';
import { BUILD_ARTIFACTS_COMMAND } from '../lib/constants';
import { INFRA_DIR, SettingsError, readSettings, requireRustAssets } from '../lib/settings';
import { dummyRustAssets, tempDir, writeAppConfig } from './support';

const assets = dummyRustAssets();
const base = {
  account: '123456789012',
  region: 'eu-west-1',
  lambdaDir: assets.lambdaDir,
  cliBinary: assets.cliBinary,
  appConfig: writeAppConfig({}),
};

function settingsFrom(context: Record<string, unknown>, env: NodeJS.ProcessEnv = {}) {
  return readSettings((key) => context[key], env);
}

describe('deploy settings', () => {
  it('reads context values given as strings by -c', () => {
    const settings = settingsFrom({ ...base, maxConcurrency: '25', creationTemplates: 'false' });
    assert.equal(settings.account, '123456789012');
    assert.equal(settings.region, 'eu-west-1');
    assert.equal(settings.maxConcurrency, 25);
    assert.equal(settings.creationTemplates, false);
    assert.equal(settings.assets.lambdaZips.pullImage, path.join(assets.lambdaDir, 'omx-pull-image', 'bootstrap.zip'));
    assert.equal(settings.assets.cliBinary, assets.cliBinary);
  });

  it('reads context values given as JSON by cdk.json, with defaults', () => {
    const settings = settingsFrom({ ...base, maxConcurrency: 5, creationTemplates: true });
    assert.equal(settings.maxConcurrency, 5);
    assert.equal(settingsFrom(base).maxConcurrency, 10);
    assert.equal(settingsFrom(base).creationTemplates, true);
  });

  it('falls back to the CDK CLI environment for account and region', () => {
    const { account: _account, region: _region, ...rest } = base;
    const settings = settingsFrom(rest, { CDK_DEFAULT_ACCOUNT: '210987654321', CDK_DEFAULT_REGION: 'us-west-2', CDK_DEPLOY_REGION: 'ap-south-1' });
    assert.equal(settings.account, '210987654321');
    assert.equal(settings.region, 'ap-south-1');
  });

  it('refuses to guess the account or region', () => {
    assert.throws(() => settingsFrom({ ...base, account: undefined }), (error: Error) => error instanceof SettingsError && /-c account=/.test(error.message));
    assert.throws(() => settingsFrom({ ...base, region: undefined }), /no AWS region: pass -c region=/);
    assert.throws(() => settingsFrom({ ...base, account: '12345' }), /"12345" is not a 12-digit AWS account id/);
    assert.throws(() => settingsFrom({ ...base, region: 'useast1' }), /"useast1" is not an AWS region name/);
  });

  it('rejects unusable concurrency and flags', () => {
    assert.throws(() => settingsFrom({ ...base, maxConcurrency: '0' }), /maxConcurrency 0 is out of range/);
    assert.throws(() => settingsFrom({ ...base, maxConcurrency: '1001' }), /maxConcurrency 1001 is out of range: 1 to 1000/);
    assert.throws(() => settingsFrom({ ...base, maxConcurrency: 'ten' }), /maxConcurrency must be a whole number, found "ten"/);
    assert.throws(() => settingsFrom({ ...base, creationTemplates: 'yes' }), /creationTemplates must be true or false/);
  });

  it('loads the app config named by context or CDK_APP_CONFIG', () => {
    const file = writeAppConfig({ container_puller: { source_aws_accounts: ['111122223333'] } });
    assert.deepEqual(settingsFrom({ ...base, appConfig: file }).appConfig.containerPuller.sourceAwsAccounts, ['111122223333']);
    assert.deepEqual(
      settingsFrom({ ...base, appConfig: undefined }, { CDK_APP_CONFIG: file }).appConfig.containerPuller.sourceAwsAccounts,
      ['111122223333'],
    );
    const missing = path.join(tempDir('omx-infra-nocfg-'), 'nope.json');
    assert.throws(() => settingsFrom({ ...base, appConfig: missing }), AppConfigError);
  });

  it('tells the user how to build every missing binary', () => {
    const empty = tempDir('omx-infra-nobuild-');
    assert.throws(
      () => requireRustAssets(path.join(empty, 'lambda'), path.join(empty, 'omx-ecr-helper')),
      (error: Error) => {
        assert.ok(error instanceof SettingsError);
        for (const name of ['omx-pull-image', 'omx-build-prepare', 'omx-apply-policy']) {
          assert.ok(error.message.includes(path.join(empty, 'lambda', name, 'bootstrap.zip')), `names ${name}`);
        }
        assert.ok(error.message.includes(path.join(empty, 'omx-ecr-helper')));
        assert.ok(error.message.includes(BUILD_ARTIFACTS_COMMAND));
        return true;
      },
    );
  });

  it('reports only what is missing', () => {
    const partial = tempDir('omx-infra-partial-');
    fs.cpSync(assets.lambdaDir, path.join(partial, 'lambda'), { recursive: true });
    fs.rmSync(path.join(partial, 'lambda', 'omx-apply-policy'), { recursive: true });
    assert.throws(
      () => requireRustAssets(path.join(partial, 'lambda'), assets.cliBinary),
      (error: Error) =>
        error.message.includes('omx-apply-policy') && !error.message.includes('omx-pull-image') && !error.message.includes(assets.cliBinary),
    );
  });

  it('resolves relative paths against the infra directory', () => {
    assert.throws(
      () => settingsFrom({ ...base, lambdaDir: 'no-such-dir' }),
      (error: Error) => error.message.includes(path.join(INFRA_DIR, 'no-such-dir', 'omx-pull-image', 'bootstrap.zip')),
    );
  });
});
