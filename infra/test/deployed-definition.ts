import { Template } from 'aws-cdk-lib/assertions';
import { LAMBDA_BINARIES } from '../lib/constants';

/** Account and region the tests synthesize for (support.synthesize's defaults). */
const ACCOUNT = '123456789012';
const REGION = 'us-east-1';

/** What a function's logical id starts with, by the binary it runs (the construct ids in lib/). */
const FUNCTION_IDS: Record<string, string> = {
  PullImage: LAMBDA_BINARIES.pullImage,
  BuildPrepare: LAMBDA_BINARIES.buildPrepare,
  ApplyPolicy: LAMBDA_BINARIES.applyPolicy,
};

export interface CodeBuildProjectInfo {
  /** The project's buildspec (`Source.BuildSpec`), parsed. */
  readonly buildSpec: { phases: Record<string, { commands: string[] }> };
  /** The project's own environment variables (name -> value). */
  readonly environment: Record<string, string>;
}

/** An IAM policy statement with every CloudFormation value resolved to a string. */
export interface ResolvedStatement {
  readonly Effect: string;
  readonly Action: string[];
  readonly Resource: string[];
  readonly Condition?: unknown;
}

export interface DeployedDefinition {
  /** The `DefinitionString` exactly as CloudFormation hands it to Step Functions. */
  readonly text: string;
  /** Lambda function ARN in the definition -> the Rust binary (`bootstrap.zip`) behind it. */
  readonly functions: Record<string, string>;
  /** CodeBuild project name in the definition -> what the project runs. */
  readonly projects: Record<string, CodeBuildProjectInfo>;
  /** The statements of each function's role (by binary) and each project's role (by name). */
  readonly policies: Record<string, ResolvedStatement[]>;
}

/**
 * The template's (only) state machine definition as deployed: its `Fn::Join` with every
 * reference resolved to the value CloudFormation returns for it (`Ref` of a CodeBuild project is
 * its name, of a log group its name, `Fn::GetAtt X.Arn` of a Lambda its function ARN; the
 * partition is `aws`). Nothing else in the text is changed. An unknown reference is an error, so
 * a new kind of reference cannot slip through unresolved.
 */
export function deployedDefinition(template: Template): DeployedDefinition {
  const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, any> }>;
  const machines = Object.values(resources).filter((resource) => resource.Type === 'AWS::StepFunctions::StateMachine');
  if (machines.length !== 1) throw new Error(`expected one state machine, found ${machines.length}`);
  const functions: Record<string, string> = {};
  const projects: Record<string, CodeBuildProjectInfo> = {};

  const resolve = (part: unknown): string => {
    if (typeof part === 'string') return part;
    const reference = part as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
    if (reference.Ref === 'AWS::Partition') return 'aws';
    if (reference.Ref === 'AWS::Region') return REGION;
    if (reference.Ref === 'AWS::AccountId') return ACCOUNT;
    const [id, attribute] = reference.Ref ? [reference.Ref, 'Ref'] : (reference['Fn::GetAtt'] ?? []);
    const resource = id ? resources[id] : undefined;
    if (resource?.Type === 'AWS::CodeBuild::Project' && attribute === 'Ref') {
      const name: string = resource.Properties.Name;
      projects[name] = {
        buildSpec: JSON.parse(resource.Properties.Source.BuildSpec),
        environment: Object.fromEntries(
          resource.Properties.Environment.EnvironmentVariables.map((variable: { Name: string; Value: string }) => [variable.Name, variable.Value]),
        ),
      };
      return name;
    }
    if (resource?.Type === 'AWS::Logs::LogGroup' && attribute === 'Ref') return `/omx-ecr-helper/${id}`;
    if (resource?.Type === 'AWS::Lambda::Function' && attribute === 'Arn') {
      const binary = Object.entries(FUNCTION_IDS).find(([prefix]) => id!.startsWith(prefix))?.[1];
      if (!binary) throw new Error(`no Rust binary known for Lambda ${id}`);
      // CloudFormation names an unnamed function <stack>-<logical id>-<suffix>.
      const arn = `arn:aws:lambda:${REGION}:${ACCOUNT}:function:OmxEcrHelper-${id}-TEST`;
      functions[arn] = binary;
      return arn;
    }
    throw new Error(`cannot resolve ${JSON.stringify(part)} in the state machine definition`);
  };

  const definition = machines[0]!.Properties.DefinitionString;
  const text = typeof definition === 'string' ? definition : (definition['Fn::Join'][1] as unknown[]).map(resolve).join(definition['Fn::Join'][0]);

  // Statement values: joins of the references above, plus ARNs of resources the definition
  // does not name (log groups, the asset bucket), which stay as markers no request can match.
  const value = (part: unknown): string => {
    const join = (part as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
    if (join) return join[1].map(value).join(join[0]);
    const sub = (part as { 'Fn::Sub'?: string })['Fn::Sub'];
    if (typeof sub === 'string') return sub.replace(/\$\{AWS::(\w+)\}/g, (_, name) => value({ Ref: `AWS::${name}` }));
    try {
      return resolve(part);
    } catch {
      return `<unresolved ${JSON.stringify(part)}>`;
    }
  };
  const list = (item: unknown): unknown[] => (Array.isArray(item) ? item : [item]);
  const statementsOfRole = (roleId: string): ResolvedStatement[] =>
    Object.values(resources)
      .filter((resource) => resource.Type === 'AWS::IAM::Policy' && list(resource.Properties.Roles).some((role) => (role as { Ref?: string }).Ref === roleId))
      .flatMap((policy) => policy.Properties.PolicyDocument.Statement)
      .map((statement: Record<string, unknown>) => ({
        Effect: String(statement.Effect),
        Action: list(statement.Action).map(String),
        Resource: list(statement.Resource).map(value),
        ...(statement.Condition ? { Condition: statement.Condition } : {}),
      }));
  const policies: Record<string, ResolvedStatement[]> = {};
  for (const [id, resource] of Object.entries(resources)) {
    if (resource.Type === 'AWS::Lambda::Function') {
      const binary = Object.entries(FUNCTION_IDS).find(([prefix]) => id.startsWith(prefix))?.[1];
      if (binary) policies[binary] = statementsOfRole(resource.Properties.Role['Fn::GetAtt'][0]);
    }
    if (resource.Type === 'AWS::CodeBuild::Project') {
      policies[resource.Properties.Name] = statementsOfRole(resource.Properties.ServiceRole['Fn::GetAtt'][0]);
    }
  }
  return { text, functions, projects, policies };
}
