import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { BUILT_IN_NAMESPACES, OMICS_PULL_ACTIONS } from '../lib/constants';
import { allStates, asList, policyStatements, render, stateMachineDefinition, synthesize } from './support';

const defaults = synthesize();
const definition = stateMachineDefinition(defaults.puller);
const states = allStates(definition);

function logicalIdOf(type: string, properties: Record<string, unknown>): string {
  const found = Object.keys(defaults.puller.findResources(type, { Properties: properties }));
  assert.equal(found.length, 1, `one ${type} with ${JSON.stringify(properties)}`);
  return found[0]!;
}

describe('omx-container-puller state machine', () => {
  it('is a standard state machine with logging and tracing', () => {
    defaults.puller.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineName: 'omx-container-puller',
      StateMachineType: 'STANDARD',
      TracingConfiguration: { Enabled: true },
      LoggingConfiguration: Match.objectLike({ Level: 'ALL', IncludeExecutionData: true }),
    });
  });

  it('maps over $.manifest with a distributed Map, ten images at a time, each wrapped as {"image": ...}', () => {
    assert.equal(definition.StartAt, 'Manifest Items');
    const map = definition.States['Manifest Items']!;
    assert.equal(map.Type, 'Map');
    assert.equal(map.ItemsPath, '$.manifest');
    assert.equal(map.MaxConcurrency, 10);
    // Each image is a STANDARD child execution: it may wait 15 minutes on the Lambda and hours on CodeBuild.
    assert.deepEqual(map.ItemProcessor.ProcessorConfig, { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
    assert.equal(map.Label, 'ManifestItems');
    assert.equal(map.ItemReader, undefined, 'items come from the execution input, not from S3');
    assert.equal(map.ResultWriter, undefined, 'results come back into the state, to be listed in the output');
    assert.equal(map.ToleratedFailurePercentage, undefined, 'no item may fail as a child execution: failures are FAILED results');
    assert.equal(map.ToleratedFailureCount, undefined);
    assert.deepEqual(map.ItemSelector, { 'image.$': '$$.Map.Item.Value' });
    assert.equal(map.ResultPath, undefined, 'the results replace the manifest (the default ResultPath "$"), leaving the payload limit to them');
    assert.equal(map.Next, 'Collect Results');
  });

  it('takes MaxConcurrency from context, beyond the 40 of an inline Map', () => {
    const custom = stateMachineDefinition(synthesize({ maxConcurrency: '250' }).puller);
    assert.equal(custom.States['Manifest Items']!.MaxConcurrency, 250);
  });

  it('copies each image with the omx-pull-image Lambda, retrying Lambda service errors', () => {
    const pullFunction = logicalIdOf('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('copies one container image') });
    const map = definition.States['Manifest Items']!;
    assert.equal(map.ItemProcessor.StartAt, 'Copy Image');
    const copy = states['Copy Image']!;
    assert.equal(copy.Type, 'Task');
    assert.equal(copy.Resource, 'arn:${AWS::Partition}:states:::lambda:invoke');
    // Exactly PullImageRequest, {"image": ...}: the handler refuses unknown fields.
    assert.deepEqual(copy.Parameters, { FunctionName: `\${${pullFunction}.Arn}`, Payload: { 'image.$': '$.image' } });
    assert.equal(copy.OutputPath, '$.Payload', 'the state continues with the function\'s response');
    const retried = copy.Retry.flatMap((retry: { ErrorEquals: string[] }) => retry.ErrorEquals);
    for (const error of ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException']) {
      assert.ok(retried.includes(error), `retries ${error}`);
    }
    assert.deepEqual(copy.Catch, [{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'Pull Lambda Failed' }]);
    assert.equal(states['Pull Lambda Failed']!.Parameters.status, 'FAILED');
    assert.equal(states['Pull Lambda Failed']!.Parameters['image.$'], '$.image');
  });

  it('runs the omx-container-pull CodeBuild project (startBuild.sync) when the image is too large', () => {
    const project = logicalIdOf('AWS::CodeBuild::Project', { Name: 'omx-container-pull' });
    const choice = states['Too Large For Lambda?']!;
    assert.equal(choice.Type, 'Choice');
    assert.deepEqual(choice.Choices, [
      {
        And: [
          { Variable: '$.too_large', IsPresent: true },
          { Variable: '$.too_large', BooleanEquals: true },
        ],
        Next: 'Copy Image With CodeBuild',
      },
    ]);
    assert.equal(choice.Default, 'Copied By Lambda');
    const codeBuild = states['Copy Image With CodeBuild']!;
    assert.equal(codeBuild.Resource, 'arn:${AWS::Partition}:states:::codebuild:startBuild.sync');
    assert.deepEqual(codeBuild.Parameters, {
      ProjectName: `\${${project}}`,
      EnvironmentVariablesOverride: [{ Name: 'IMAGE', Type: 'PLAINTEXT', 'Value.$': '$.image' }],
    });
    assert.equal(codeBuild.Next, 'Copied By CodeBuild');
    assert.equal(codeBuild.Catch[0].Next, 'CodeBuild Copy Failed');
    assert.ok(codeBuild.Retry.some((retry: { ErrorEquals: string[] }) => retry.ErrorEquals.includes('CodeBuild.AccountLimitExceededException')));
    assert.equal(states['Copied By CodeBuild']!.Parameters.status, 'SUCCEEDED');
    const failed = states['CodeBuild Copy Failed']!.Parameters;
    assert.equal(failed.status, 'FAILED');
    assert.match(failed['message.$'], /^States\.Format\('CodeBuild project omx-container-pull failed \(\{\}\); its logs are in CloudWatch log group \$\{PullFallbackLogs[0-9A-F]{8}\}', \$\.error\.Error\)$/);
  });

  it('fails the execution, listing the failed images, when any image failed', () => {
    assert.deepEqual(definition.States['Collect Results']!.Parameters, { 'images.$': '$', 'statuses.$': '$[*].status' });
    assert.deepEqual(definition.States['Check Results']!.Parameters, {
      'images.$': '$.images',
      'total.$': 'States.ArrayLength($.images)',
      'any_failed.$': "States.ArrayContains($.statuses, 'FAILED')",
    });
    const choice = definition.States['Any Image Failed?']!;
    assert.deepEqual(choice.Choices, [{ Variable: '$.any_failed', BooleanEquals: true, Next: 'List Failures' }]);
    assert.equal(choice.Default, 'Report Results');
    assert.deepEqual(definition.States['List Failures']!.Parameters, { 'failed.$': "$.images[?(@.status == 'FAILED')]", 'total.$': '$.total' });
    assert.equal(definition.States['List Failures']!.Next, 'Describe Failures');
    // States.ArrayLength is not among the intrinsics a Fail state's CausePath may use, so the
    // cause is composed by a Pass state and the Fail state only points at it.
    assert.deepEqual(definition.States['Describe Failures']!.Parameters, {
      'cause.$': "States.Format('{} of {} image(s) failed: {}', States.ArrayLength($.failed), $.total, States.JsonToString($.failed))",
    });
    assert.equal(definition.States['Describe Failures']!.Next, 'Some Images Failed');
    const fail = definition.States['Some Images Failed']!;
    assert.equal(fail.Type, 'Fail');
    assert.equal(fail.Error, 'OmxImagesFailed');
    assert.equal(fail.CausePath, '$.cause');
    const report = definition.States['Report Results']!;
    assert.deepEqual(report.Parameters, { 'images.$': '$.images', 'total.$': '$.total' });
    assert.equal(report.End, true);
  });
});

describe('puller functions and build project', () => {
  it('runs the three Rust binaries on provided.al2023 x86_64 with the stack\'s account and region', () => {
    const functions = defaults.puller.findResources('AWS::Lambda::Function');
    assert.equal(Object.keys(functions).length, 2, 'omx-pull-image and omx-apply-policy');
    for (const fn of Object.values(functions)) {
      assert.equal(fn.Properties.Runtime, 'provided.al2023');
      assert.deepEqual(fn.Properties.Architectures, ['x86_64']);
      assert.equal(fn.Properties.Handler, 'bootstrap');
      assert.deepEqual(fn.Properties.Environment.Variables, { OMX_REGION: 'us-east-1', OMX_ACCOUNT: '123456789012', RUST_LOG: 'info' });
      assert.ok(fn.Properties.LoggingConfig.LogGroup, 'logs to its own log group');
    }
    assert.equal(Object.keys(defaults.builder.findResources('AWS::Lambda::Function')).length, 1, 'omx-build-prepare');
  });

  it('runs the CLI fallback unprivileged on the Amazon Linux 2023 standard image', () => {
    const projects = Object.values(defaults.puller.findResources('AWS::CodeBuild::Project'));
    assert.equal(projects.length, 1);
    const project = projects[0]!.Properties;
    assert.equal(project.Name, 'omx-container-pull');
    assert.equal(project.Environment.Image, 'aws/codebuild/amazonlinux-x86_64-standard:5.0');
    assert.equal(project.Environment.PrivilegedMode, false);
    assert.equal(project.Source.Type, 'S3');
    const buildSpec = JSON.parse(project.Source.BuildSpec);
    assert.deepEqual(buildSpec.phases.build.commands, ['./omx-ecr-helper pull --single "$IMAGE" --format json']);
    const variables = Object.fromEntries(project.Environment.EnvironmentVariables.map((variable: { Name: string; Value: string }) => [variable.Name, variable.Value]));
    assert.equal(variables.OMX_ACCOUNT, '123456789012');
    assert.equal(variables.RUST_LOG, 'info');
  });
});

describe('puller permissions', () => {
  const statements = policyStatements(defaults.puller);

  it('never grants ecr:* and uses Resource "*" only for actions without resource types', () => {
    const resourceless = new Set([
      'ecr:GetAuthorizationToken',
      // Step Functions logging and X-Ray tracing, as CDK grants them.
      'logs:CreateLogDelivery', 'logs:GetLogDelivery', 'logs:UpdateLogDelivery', 'logs:DeleteLogDelivery',
      'logs:ListLogDeliveries', 'logs:PutResourcePolicy', 'logs:DescribeResourcePolicies', 'logs:DescribeLogGroups',
      'xray:PutTraceSegments', 'xray:PutTelemetryRecords', 'xray:GetSamplingRules', 'xray:GetSamplingTargets',
    ]);
    for (const { statement } of [...statements, ...policyStatements(defaults.builder)]) {
      for (const action of asList<string>(statement.Action)) {
        assert.ok(!action.endsWith(':*') && action !== '*', `no service-wide wildcard action: ${action}`);
      }
      if (asList(statement.Resource).includes('*')) {
        for (const action of asList<string>(statement.Action)) assert.ok(resourceless.has(action), `${action} on Resource "*"`);
      }
    }
  });

  it('lets the state machine start, describe, stop and redrive only its own distributed Map child executions', () => {
    const machine = logicalIdOf('AWS::StepFunctions::StateMachine', { StateMachineName: 'omx-container-puller' });
    const role = defaults.puller.findResources('AWS::StepFunctions::StateMachine')[machine]!.Properties.RoleArn['Fn::GetAtt'][0];
    const stepFunctionsGrants = statements.filter(({ statement }) => asList<string>(statement.Action).some((action) => action.startsWith('states:')));
    const ownName = `{"Fn::Select":[6,{"Fn::Split":[":",{"Ref":"${machine}"}]}]}`;
    assert.deepEqual(
      stepFunctionsGrants.map(({ statement }) => [asList(statement.Action), asList(statement.Resource).map(render)]),
      [
        [['states:StartExecution'], [`\${${machine}}`]],
        [['states:DescribeExecution', 'states:StopExecution'], [`arn:\${AWS::Partition}:states:us-east-1:123456789012:execution:${ownName}:*`]],
        [['states:RedriveExecution'], [`arn:\${AWS::Partition}:states:us-east-1:123456789012:execution:${ownName}/ManifestItems:*`]],
      ],
    );
    const policy = defaults.puller.findResources('AWS::IAM::Policy')[stepFunctionsGrants[0]!.policy]!;
    assert.deepEqual(policy.Properties.Roles, [{ Ref: role }], 'granted to the state machine\'s own role');
  });

  it('scopes image copying to the namespace repositories of this account and region', () => {
    const copying = statements.filter(({ statement }) => statement.Sid === 'NamespacedRepositories');
    assert.equal(copying.length, 2, 'the Lambda role and the CodeBuild role');
    for (const { statement } of copying) {
      assert.deepEqual(
        asList(statement.Resource).map(render),
        BUILT_IN_NAMESPACES.map((namespace) => `arn:\${AWS::Partition}:ecr:us-east-1:123456789012:repository/${namespace}/*`),
      );
      for (const action of [...OMICS_PULL_ACTIONS, 'ecr:PutImage', 'ecr:CreateRepository', 'ecr:TagResource', 'ecr:SetRepositoryPolicy', 'ecr:BatchImportUpstreamImage']) {
        assert.ok(asList(statement.Action).includes(action), `grants ${action}`);
      }
    }
    const login = statements.filter(({ statement }) => statement.Sid === 'EcrLogin');
    assert.equal(login.length, 2);
    for (const { statement } of login) assert.equal(statement.Action, 'ecr:GetAuthorizationToken');
  });

  it('reads other accounts only when app-config lists them, read-only, in-region unless allowed', () => {
    assert.equal(statements.filter(({ statement }) => statement.Sid === 'CrossAccountSourceRepositories').length, 0);

    const inRegion = policyStatements(synthesize({}, { container_puller: { source_aws_accounts: ['111122223333', '444455556666'] } }).puller);
    const crossAccount = inRegion.filter(({ statement }) => statement.Sid === 'CrossAccountSourceRepositories');
    assert.equal(crossAccount.length, 2);
    for (const { statement } of crossAccount) {
      assert.deepEqual(asList(statement.Resource).map(render), [
        'arn:${AWS::Partition}:ecr:us-east-1:111122223333:repository/*',
        'arn:${AWS::Partition}:ecr:us-east-1:444455556666:repository/*',
      ]);
      assert.deepEqual(statement.Action, [...OMICS_PULL_ACTIONS, 'ecr:DescribeImages']);
    }

    const anyRegion = policyStatements(
      synthesize({}, { container_puller: { source_aws_accounts: ['111122223333'], allow_cross_region_pull: true } }).puller,
    ).find(({ statement }) => statement.Sid === 'CrossAccountSourceRepositories');
    assert.deepEqual(asList(anyRegion!.statement.Resource).map(render), ['arn:${AWS::Partition}:ecr:*:111122223333:repository/*']);
  });

  it('adds the extra namespaces of app-config to the writable repositories', () => {
    const extra = policyStatements(synthesize({}, { container_puller: { extra_namespaces: ['wave'] } }).puller).find(
      ({ statement }) => statement.Sid === 'NamespacedRepositories',
    );
    assert.ok(asList(extra!.statement.Resource).map(render).includes('arn:${AWS::Partition}:ecr:us-east-1:123456789012:repository/wave/*'));
  });

  it('lets the policy Lambda set policies only on namespace or omx-ecr-helper-tagged repositories', () => {
    const tagged = statements.find(({ statement }) => statement.Sid === 'TaggedRepositoryPolicies')!.statement;
    assert.deepEqual(tagged.Condition, { StringEquals: { 'aws:ResourceTag/createdBy': 'omx-ecr-helper' } });
    assert.equal(render(tagged.Resource), 'arn:${AWS::Partition}:ecr:us-east-1:123456789012:repository/*');
    assert.ok(!asList(tagged.Action).includes('ecr:PutImage'));
  });
});

describe('repository policy plumbing', () => {
  it('caches quay.io and public.ecr.aws through pull-through-cache rules', () => {
    defaults.puller.resourceCountIs('AWS::ECR::PullThroughCacheRule', 2);
    defaults.puller.hasResourceProperties('AWS::ECR::PullThroughCacheRule', { EcrRepositoryPrefix: 'quay', UpstreamRegistryUrl: 'quay.io' });
    defaults.puller.hasResourceProperties('AWS::ECR::PullThroughCacheRule', { EcrRepositoryPrefix: 'ecr-public', UpstreamRegistryUrl: 'public.ecr.aws' });
  });

  it('sends repository creations by omx-ecr-helper and by the pull-through cache to omx-apply-policy', () => {
    const applyPolicy = logicalIdOf('AWS::Lambda::Function', { Description: Match.stringLikeRegexp('merges the HealthOmics') });
    const rules = Object.values(defaults.puller.findResources('AWS::Events::Rule'));
    assert.equal(rules.length, 1);
    const rule = rules[0]!.Properties;
    assert.deepEqual(rule.EventPattern, {
      source: ['aws.ecr'],
      'detail-type': ['AWS API Call via CloudTrail', 'AWS Service Event via CloudTrail'],
      detail: {
        eventSource: ['ecr.amazonaws.com'],
        eventName: ['CreateRepository'],
        errorCode: [{ exists: false }],
        $or: [
          { eventType: ['AwsServiceEvent'] },
          { eventType: ['AwsApiCall'], requestParameters: { tags: { Key: ['createdBy'], Value: ['omx-ecr-helper'] } } },
          { eventType: ['AwsApiCall'], requestParameters: { tags: { key: ['createdBy'], value: ['omx-ecr-helper'] } } },
        ],
      },
    });
    assert.deepEqual(rule.Targets[0].Arn, { 'Fn::GetAtt': [applyPolicy, 'Arn'] });
    defaults.puller.hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      Principal: 'events.amazonaws.com',
      FunctionName: { 'Fn::GetAtt': [applyPolicy, 'Arn'] },
    });
  });

  it('creates templated pull-through-cache repositories with the HealthOmics policy and tag', () => {
    const templates = Object.values(defaults.puller.findResources('AWS::ECR::RepositoryCreationTemplate'));
    assert.deepEqual(templates.map((template) => template.Properties.Prefix).sort(), ['ecr-public', 'quay']);
    for (const { Properties: template } of templates) {
      assert.deepEqual(template.AppliedFor, ['PULL_THROUGH_CACHE']);
      assert.deepEqual(template.ResourceTags, [{ Key: 'createdBy', Value: 'omx-ecr-helper' }]);
      assert.deepEqual(JSON.parse(template.RepositoryPolicy), {
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'omics workflow access',
            Effect: 'Allow',
            Principal: { Service: 'omics.amazonaws.com' },
            Action: ['ecr:GetDownloadUrlForLayer', 'ecr:BatchGetImage', 'ecr:BatchCheckLayerAvailability'],
          },
        ],
      });
      assert.ok(template.CustomRoleArn['Fn::GetAtt'][0].startsWith('CreationTemplateRole'));
    }
    defaults.puller.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: {
        Statement: [Match.objectLike({ Principal: { Service: 'ecr.amazonaws.com' }, Condition: { StringEquals: { 'aws:SourceAccount': '123456789012' } } })],
      },
    });
  });

  it('leaves creation templates out when the region lacks them', () => {
    const without = synthesize({ creationTemplates: 'false' }).puller;
    without.resourceCountIs('AWS::ECR::RepositoryCreationTemplate', 0);
    without.resourceCountIs('AWS::ECR::PullThroughCacheRule', 2);
    assert.equal(Object.keys(without.findResources('AWS::IAM::Role', { Properties: { AssumeRolePolicyDocument: { Statement: [Match.objectLike({ Principal: { Service: 'ecr.amazonaws.com' } })] } } })).length, 0);
  });

  it('outputs the state machine ARN and the registry URI', () => {
    const machine = logicalIdOf('AWS::StepFunctions::StateMachine', { StateMachineName: 'omx-container-puller' });
    defaults.puller.hasOutput('PullerStateMachineArn', { Value: { Ref: machine } });
    const registry = defaults.puller.findOutputs('RegistryUri');
    assert.equal(render(registry.RegistryUri!.Value), '123456789012.dkr.ecr.us-east-1.${AWS::URLSuffix}');
  });
});
