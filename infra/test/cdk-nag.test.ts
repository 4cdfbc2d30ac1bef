import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { synthesize } from './support';

const fullConfig = {
  container_builder: { source_uris: ['s3://whole-bucket', 's3://team-bucket/container-source'] },
  container_puller: { source_aws_accounts: ['111122223333'], allow_cross_region_pull: true, extra_namespaces: ['wave'] },
};

function nagFindings(stack: Parameters<typeof Annotations.fromStack>[0]) {
  const annotations = Annotations.fromStack(stack);
  return [
    ...annotations.findError('*', Match.stringLikeRegexp('AwsSolutions-.*')),
    ...annotations.findWarning('*', Match.stringLikeRegexp('AwsSolutions-.*')),
  ].map((finding) => `${finding.id}: ${String(finding.entry.data).split(':')[0]}`);
}

interface Suppression {
  id: string;
  reason: string;
  applies_to?: unknown[];
}

function suppressions(template: Template): Array<{ resource: string; rule: Suppression }> {
  return Object.entries(template.toJSON().Resources as Record<string, { Metadata?: { cdk_nag?: { rules_to_suppress: Suppression[] } } }>)
    .flatMap(([resource, body]) => (body.Metadata?.cdk_nag?.rules_to_suppress ?? []).map((rule) => ({ resource, rule })));
}

describe('cdk-nag AwsSolutions checks', () => {
  for (const [label, config] of [['default configuration', undefined], ['every app-config option set', fullConfig]] as const) {
    it(`pass on both stacks with the ${label}`, () => {
      const { stacks } = synthesize({}, config);
      assert.deepEqual(nagFindings(stacks.puller), []);
      assert.deepEqual(nagFindings(stacks.builder), []);
    });
  }

  it('are acknowledged only with a reason, and IAM5 only for named findings', () => {
    const { puller, builder } = synthesize({}, fullConfig);
    const all = [...suppressions(puller), ...suppressions(builder)];
    assert.ok(all.length > 0);
    for (const { resource, rule } of all) {
      assert.ok(rule.reason.length >= 40, `${resource} ${rule.id} has a real reason: ${rule.reason}`);
      if (rule.id === 'AwsSolutions-IAM5') {
        assert.ok((rule.applies_to ?? []).length > 0, `${resource} acknowledges IAM5 for named findings only`);
      }
    }
    const privileged = all.filter(({ rule }) => rule.id === 'AwsSolutions-CB3');
    assert.equal(privileged.length, 1, 'only the builder project runs privileged');
  });

  it('still catch a wildcard nobody acknowledged', () => {
    const { stacks } = synthesize({}, undefined, ({ puller }) => {
      new iam.Role(puller, 'CarelessRole', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') }).addToPolicy(
        new iam.PolicyStatement({ actions: ['ecr:*'], resources: ['*'] }),
      );
    });
    const findings = nagFindings(stacks.puller);
    assert.ok(findings.some((finding) => finding.includes('CarelessRole') && finding.includes('AwsSolutions-IAM5')), findings.join('\n'));
  });
});
