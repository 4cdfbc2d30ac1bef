import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Match } from 'aws-cdk-lib/assertions';
import { allStates, asList, policyStatements, render, stateMachineDefinition, synthesize } from './support';

const withSources = synthesize({}, { container_builder: { source_uris: ['s3://whole-bucket', 's3://team-bucket/container-source/'] } });
const definition = stateMachineDefinition(withSources.builder);
const states = allStates(definition);

describe('omx-container-builder state machine', () => {
  it('maps over $.manifest and fails the execution when any build failed', () => {
    withSources.builder.hasResourceProperties('AWS::StepFunctions::StateMachine', {
      StateMachineName: 'omx-container-builder',
      TracingConfiguration: { Enabled: true },
    });
    const map = definition.States['Manifest Items']!;
    assert.equal(map.ItemsPath, '$.manifest');
    assert.equal(map.MaxConcurrency, 10);
    assert.deepEqual(
      map.ItemSelector,
      { 'source_uri.$': '$$.Map.Item.Value.source_uri', 'target_image.$': '$$.Map.Item.Value.target_image' },
      'each iteration gets exactly the two fields of its manifest entry',
    );
    assert.deepEqual(map.ItemProcessor.ProcessorConfig, { Mode: 'DISTRIBUTED', ExecutionType: 'STANDARD' });
    assert.equal(map.ResultPath, undefined, 'the results replace the manifest (the default ResultPath "$")');
    assert.deepEqual(definition.States['Collect Results']!.Parameters, { 'builds.$': '$', 'statuses.$': '$[*].status' });
    assert.equal(definition.States['List Failures']!.Parameters['failed.$'], "$.builds[?(@.status == 'FAILED')]");
    const fail = definition.States['Some Builds Failed']!;
    assert.equal(fail.Type, 'Fail');
    assert.equal(fail.Error, 'OmxBuildsFailed');
    assert.equal(fail.CausePath, '$.cause');
    assert.match(definition.States['Describe Failures']!.Parameters['cause.$'], /build\(s\) failed/);
    assert.deepEqual(definition.States['Report Results']!.Parameters, { 'builds.$': '$.builds', 'total.$': '$.total' });
  });

  it('prepares each item with omx-build-prepare and builds only when needed', () => {
    const prepareFunction = Object.keys(withSources.builder.findResources('AWS::Lambda::Function'))[0]!;
    const prepare = states['Prepare Build']!;
    assert.equal(prepare.Resource, 'arn:${AWS::Partition}:states:::lambda:invoke');
    // Exactly BuildPrepareRequest: the handler refuses unknown fields.
    assert.deepEqual(prepare.Parameters, {
      FunctionName: `\${${prepareFunction}.Arn}`,
      Payload: { 'source_uri.$': '$.source_uri', 'target_image.$': '$.target_image' },
    });
    assert.equal(prepare.OutputPath, '$.Payload', 'the state continues with the function\'s response');
    assert.ok(prepare.Retry.some((retry: { ErrorEquals: string[] }) => retry.ErrorEquals.includes('Lambda.ServiceException')));
    assert.equal(prepare.Catch[0].Next, 'Prepare Lambda Failed');
    assert.equal(prepare.Next, 'Build Needed?');
    const choice = states['Build Needed?']!;
    assert.deepEqual(choice.Choices.map((rule: { Next: string }) => rule.Next), ['Prepare Reported Failure', 'Image Up To Date']);
    assert.deepEqual(choice.Choices[1].And, [
      { Variable: '$.skip', IsPresent: true },
      { Variable: '$.skip', BooleanEquals: true },
    ]);
    assert.equal(choice.Default, 'Build Image With CodeBuild');
  });

  it('passes source, resolved target and source digest to the omx-container-build project', () => {
    const project = Object.keys(withSources.builder.findResources('AWS::CodeBuild::Project'))[0]!;
    const build = states['Build Image With CodeBuild']!;
    assert.equal(build.Resource, 'arn:${AWS::Partition}:states:::codebuild:startBuild.sync');
    assert.deepEqual(build.Parameters, {
      ProjectName: `\${${project}}`,
      EnvironmentVariablesOverride: [
        { Name: 'SOURCE_URI', Type: 'PLAINTEXT', 'Value.$': '$.source_uri' },
        { Name: 'TARGET_IMAGE', Type: 'PLAINTEXT', 'Value.$': '$.target' },
        { Name: 'SOURCE_DIGEST', Type: 'PLAINTEXT', 'Value.$': '$.source_digest' },
      ],
    });
    assert.equal(build.Next, 'Built By CodeBuild');
    assert.equal(build.Catch[0].Next, 'CodeBuild Build Failed');
    assert.equal(states['Built By CodeBuild']!.Parameters.status, 'SUCCEEDED');
    assert.equal(states['CodeBuild Build Failed']!.Parameters.status, 'FAILED');
  });

  it('builds in a privileged Amazon Linux 2023 project with the Docker engine', () => {
    withSources.builder.hasResourceProperties('AWS::CodeBuild::Project', {
      Name: 'omx-container-build',
      Environment: Match.objectLike({
        Image: 'aws/codebuild/amazonlinux-x86_64-standard:5.0',
        PrivilegedMode: true,
        EnvironmentVariables: Match.arrayWith([{ Name: 'OMX_BUILD_ENGINE', Type: 'PLAINTEXT', Value: 'docker' }]),
      }),
    });
    const project = Object.values(withSources.builder.findResources('AWS::CodeBuild::Project'))[0]!.Properties;
    assert.deepEqual(JSON.parse(project.Source.BuildSpec).phases.build.commands, [
      './omx-ecr-helper build --source "$SOURCE_URI" --target "$TARGET_IMAGE" --engine docker --format json',
    ]);
  });

  it('outputs the state machine ARN and the registry URI', () => {
    const machine = Object.keys(withSources.builder.findResources('AWS::StepFunctions::StateMachine'))[0]!;
    withSources.builder.hasOutput('BuilderStateMachineArn', { Value: { Ref: machine } });
    assert.equal(render(withSources.builder.findOutputs('RegistryUri').RegistryUri!.Value), '123456789012.dkr.ecr.us-east-1.${AWS::URLSuffix}');
  });

  it('depends on the puller stack, whose EventBridge rule sets the new repositories\' policies', () => {
    assert.ok(withSources.stacks.builder.dependencies.includes(withSources.stacks.puller));
  });
});

describe('builder permissions', () => {
  const statements = policyStatements(withSources.builder);

  it('reads only the configured S3 locations', () => {
    const objects = statements.filter(({ statement }) => statement.Sid === 'ReadSourceObjects');
    assert.equal(objects.length, 2, 'the prepare Lambda and the build project');
    for (const { statement } of objects) {
      assert.equal(statement.Action, 's3:GetObject');
      assert.deepEqual(asList(statement.Resource).map(render), [
        'arn:${AWS::Partition}:s3:::whole-bucket/*',
        'arn:${AWS::Partition}:s3:::team-bucket/container-source',
        'arn:${AWS::Partition}:s3:::team-bucket/container-source/*',
      ]);
    }
    const listings = statements.filter(({ statement }) => statement.Sid?.startsWith('ListSourceBucket')).map(({ statement }) => statement);
    const wholeBucket = listings.find((statement) => render(statement.Resource) === 'arn:${AWS::Partition}:s3:::whole-bucket')!;
    assert.equal(wholeBucket.Condition, undefined);
    const prefixed = listings.find((statement) => render(statement.Resource) === 'arn:${AWS::Partition}:s3:::team-bucket')!;
    assert.deepEqual(prefixed.Condition, { StringLike: { 's3:prefix': ['container-source', 'container-source/*'] } });
    const allActions = statements.flatMap(({ statement }) => asList<string>(statement.Action));
    assert.ok(!allActions.some((action) => /^s3:(Put|Delete)/.test(action)), 'never writes S3');
  });

  it('has no S3 access at all without configured sources', () => {
    const none = policyStatements(synthesize().builder);
    assert.ok(!none.some(({ statement }) => statement.Sid === 'ReadSourceObjects' || statement.Sid?.startsWith('ListSourceBucket')));
  });

  it('pushes only to repositories of its own account and region', () => {
    const target = statements.find(({ statement }) => statement.Sid === 'TargetRepositories')!.statement;
    assert.equal(render(target.Resource), 'arn:${AWS::Partition}:ecr:us-east-1:123456789012:repository/*');
    assert.ok(asList(target.Action).includes('ecr:PutImage'));
    const prepareRead = statements.find(({ statement }) => statement.Sid === 'ReadTargetRepositories')!.statement;
    assert.ok(!asList(prepareRead.Action).includes('ecr:PutImage'), 'the prepare Lambda only reads');
  });
});
