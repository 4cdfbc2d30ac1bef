import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { AppConfigError, DEFAULT_APP_CONFIG, loadAppConfig, parseAppConfig, parseS3Uri } from '../lib/app-config';
import { tempDir, writeAppConfig } from './support';

function problemsOf(value: unknown): readonly string[] {
  try {
    parseAppConfig(value, 'test.json');
  } catch (error) {
    assert.ok(error instanceof AppConfigError, `expected AppConfigError, got ${error}`);
    assert.equal(error.source, 'test.json');
    return error.problems;
  }
  assert.fail('expected the config to be rejected');
}

describe('app-config.json', () => {
  it('reads the original tool\'s keys', () => {
    const config = parseAppConfig(
      {
        container_builder: { source_uris: ['s3://my-bucket-1', 's3://my-bucket-2/path/to/source/'] },
        container_puller: { source_aws_accounts: ['111122223333'], allow_cross_region_pull: true },
      },
      'app-config.json',
    );
    assert.deepEqual(config.containerBuilder.sourceUris, [
      { uri: 's3://my-bucket-1', bucket: 'my-bucket-1', prefix: '' },
      { uri: 's3://my-bucket-2/path/to/source/', bucket: 'my-bucket-2', prefix: 'path/to/source' },
    ]);
    assert.deepEqual(config.containerPuller, {
      sourceAwsAccounts: ['111122223333'],
      allowCrossRegionPull: true,
      extraNamespaces: [],
    });
  });

  it('treats missing sections and keys as the defaults', () => {
    assert.deepEqual(parseAppConfig({}, 'x'), DEFAULT_APP_CONFIG);
    assert.deepEqual(parseAppConfig({ container_puller: {} }, 'x'), DEFAULT_APP_CONFIG);
  });

  it('merges duplicate entries', () => {
    const config = parseAppConfig(
      {
        container_builder: { source_uris: ['s3://bucket/a', 's3://bucket/a/'] },
        container_puller: { source_aws_accounts: ['111122223333', '111122223333'], extra_namespaces: ['wave', 'wave'] },
      },
      'x',
    );
    assert.equal(config.containerBuilder.sourceUris.length, 1);
    assert.deepEqual(config.containerPuller.sourceAwsAccounts, ['111122223333']);
    assert.deepEqual(config.containerPuller.extraNamespaces, ['wave']);
  });

  it('rejects unknown keys at every level, naming the known ones', () => {
    const problems = problemsOf({
      container_pullers: {},
      container_builder: { source_uri: [] },
      container_puller: { allow_cross_region: true },
    });
    assert.deepEqual(problems, [
      'unknown key container_pullers (known keys here: container_builder, container_puller)',
      'unknown key container_builder.source_uri (known keys here: source_uris)',
      'unknown key container_puller.allow_cross_region (known keys here: source_aws_accounts, allow_cross_region_pull, extra_namespaces)',
    ]);
  });

  it('rejects wrong types with the path and what was found', () => {
    const problems = problemsOf({
      container_builder: { source_uris: 's3://bucket' },
      container_puller: { source_aws_accounts: [111122223333], allow_cross_region_pull: 'yes' },
    });
    assert.deepEqual(problems, [
      'container_builder.source_uris must be a list of strings, found string "s3://bucket"',
      'container_puller.source_aws_accounts[0] must be a string, found number 111122223333',
      'container_puller.allow_cross_region_pull must be true or false, found string "yes"',
    ]);
    assert.deepEqual(problemsOf([]), ['the top level must be a JSON object, found a list']);
    assert.deepEqual(problemsOf({ container_puller: null }), ['container_puller must be an object, found null']);
  });

  it('rejects malformed S3 URIs, each with its index and reason', () => {
    const problems = problemsOf({
      container_builder: {
        source_uris: ['https://bucket/key', 's3://Upper_Case', 's3://bucket/prefix/*', 's3://ok-bucket', 's3://bu'],
      },
    });
    assert.equal(problems.length, 4);
    assert.match(problems[0]!, /^container_builder\.source_uris\[0\] "https:\/\/bucket\/key": an S3 URI starts with s3:\/\//);
    assert.match(problems[1]!, /^container_builder\.source_uris\[1\] .*"Upper_Case" is not a valid S3 bucket name/);
    assert.match(problems[2]!, /^container_builder\.source_uris\[2\] .*wildcards/);
    assert.match(problems[3]!, /^container_builder\.source_uris\[4\] .*"bu" is not a valid S3 bucket name/);
  });

  it('rejects account ids that are not 12 digits', () => {
    const problems = problemsOf({
      container_puller: { source_aws_accounts: ['1111222233', '111122223333', 'abcdabcdabcd', '1111222233334'] },
    });
    assert.deepEqual(problems, [
      'container_puller.source_aws_accounts[0] "1111222233": an AWS account id is exactly 12 digits',
      'container_puller.source_aws_accounts[2] "abcdabcdabcd": an AWS account id is exactly 12 digits',
      'container_puller.source_aws_accounts[3] "1111222233334": an AWS account id is exactly 12 digits',
    ]);
  });

  it('rejects extra namespaces that are not repository prefixes', () => {
    const problems = problemsOf({ container_puller: { extra_namespaces: ['wave', 'Wave', 'a/', '*'] } });
    assert.equal(problems.length, 3);
    assert.ok(problems.every((problem) => problem.includes('not an ECR repository prefix')));
  });

  it('reports every problem of a file in one error message', () => {
    const file = writeAppConfig({ bogus: 1, container_puller: { source_aws_accounts: ['12'] } });
    assert.throws(
      () => loadAppConfig(file, true),
      (error: Error) =>
        error instanceof AppConfigError &&
        error.message.startsWith(`invalid app config ${file}:\n`) &&
        error.message.includes('  - unknown key bogus') &&
        error.message.includes('  - container_puller.source_aws_accounts[0] "12"'),
    );
  });

  it('uses the defaults when the optional file is absent, but not when it was asked for', () => {
    const missing = path.join(tempDir('omx-infra-missing-'), 'app-config.json');
    assert.deepEqual(loadAppConfig(missing, false), DEFAULT_APP_CONFIG);
    assert.throws(() => loadAppConfig(missing, true), /cannot read the file/);
  });

  it('names the file and the JSON error for unparsable files', () => {
    const file = path.join(tempDir('omx-infra-bad-'), 'app-config.json');
    fs.writeFileSync(file, '{"container_puller": ');
    assert.throws(() => loadAppConfig(file, false), (error: Error) => error.message.includes(file) && /not valid JSON/.test(error.message));
  });

  it('parses S3 URIs into bucket and prefix', () => {
    assert.deepEqual(parseS3Uri('s3://b.example-1/a/b/'), { uri: 's3://b.example-1/a/b/', bucket: 'b.example-1', prefix: 'a/b' });
    assert.match(String(parseS3Uri('s3://bucket//a')), /empty path segment/);
    assert.match(String(parseS3Uri('s3://192.168.1.1')), /not a valid S3 bucket name/);
  });
});
