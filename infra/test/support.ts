import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { OmxStacks, addOmxStacks } from '../lib/app';
import { LAMBDA_BINARIES } from '../lib/constants';
import { readSettings } from '../lib/settings';

const tempDirs: string[] = [];
process.on('exit', () => {
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

/** A temporary directory removed when the process exits. */
export function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/**
 * A zip archive (stored, no compression) holding `files`; enough of the format for Lambda's
 * `bootstrap.zip` stand-ins.
 */
export function zipArchive(files: Record<string, string>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, content] of Object.entries(files)) {
    const nameBytes = Buffer.from(name);
    const data = Buffer.from(content);
    const crc = zlib.crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix, so the mode below counts
    central.writeUInt16LE(20, 6);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE((0o100755 << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + data.length;
  }
  const centralSize = centrals.reduce((sum, part) => sum + part.length, 0);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(centralSize, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, ...centrals, end]);
}

/** Stand-ins for the Rust build outputs: `lambda/<name>/bootstrap.zip` and the CLI binary. */
export function dummyRustAssets(): { lambdaDir: string; cliBinary: string } {
  const root = tempDir('omx-infra-assets-');
  const lambdaDir = path.join(root, 'lambda');
  for (const name of Object.values(LAMBDA_BINARIES)) {
    fs.mkdirSync(path.join(lambdaDir, name), { recursive: true });
    fs.writeFileSync(
      path.join(lambdaDir, name, 'bootstrap.zip'),
      zipArchive({ bootstrap: `#!/bin/sh\necho ${name} stand-in\n` }),
    );
  }
  const cliBinary = path.join(root, 'release', 'omx-ecr-helper');
  fs.mkdirSync(path.dirname(cliBinary));
  fs.writeFileSync(cliBinary, '#!/bin/sh\necho omx-ecr-helper stand-in\n', { mode: 0o755 });
  return { lambdaDir, cliBinary };
}

/** Writes an app-config.json with `config` and returns its path. */
export function writeAppConfig(config: unknown): string {
  const file = path.join(tempDir('omx-infra-config-'), 'app-config.json');
  fs.writeFileSync(file, JSON.stringify(config));
  return file;
}

let sharedAssets: { lambdaDir: string; cliBinary: string } | undefined;

export interface SynthesizedApp {
  readonly app: App;
  readonly stacks: OmxStacks;
  readonly puller: Template;
  readonly builder: Template;
}

/**
 * Builds both stacks from CDK context the way `cdk synth -c key=value` passes it. Without an
 * `appConfig` entry the default (empty) configuration applies.
 */
export function synthesize(
  context: Record<string, string> = {},
  config?: unknown,
  beforeSynth?: (stacks: OmxStacks) => void,
): SynthesizedApp {
  sharedAssets ??= dummyRustAssets();
  const fullContext: Record<string, string> = {
    account: '123456789012',
    region: 'us-east-1',
    lambdaDir: sharedAssets.lambdaDir,
    cliBinary: sharedAssets.cliBinary,
    appConfig: writeAppConfig(config ?? {}),
    ...context,
  };
  const app = new App({ outdir: tempDir('omx-infra-cdkout-') });
  const stacks = addOmxStacks(
    app,
    readSettings((key) => fullContext[key], {}),
  );
  beforeSynth?.(stacks);
  return {
    app,
    stacks,
    puller: Template.fromStack(stacks.puller),
    builder: Template.fromStack(stacks.builder),
  };
}

/** A state's JSON with CloudFormation references replaced by `${Ref}` / `${Resource.Attr}` markers. */
export type StateMachineDefinition = {
  StartAt: string;
  States: Record<string, Record<string, any>>;
  [key: string]: unknown;
};

/** The definition of the template's (only) state machine, parsed from its `Fn::Join`. */
export function stateMachineDefinition(template: Template): StateMachineDefinition {
  const machines = Object.values(template.findResources('AWS::StepFunctions::StateMachine'));
  if (machines.length !== 1) throw new Error(`expected one state machine, found ${machines.length}`);
  const definition = machines[0].Properties.DefinitionString;
  const text =
    typeof definition === 'string'
      ? definition
      : (definition['Fn::Join'][1] as unknown[]).map((part) => (typeof part === 'string' ? part : marker(part))).join('');
  return JSON.parse(text);
}

function marker(part: unknown): string {
  const reference = part as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
  if (reference.Ref) return `\${${reference.Ref}}`;
  if (reference['Fn::GetAtt']) return `\${${reference['Fn::GetAtt'].join('.')}}`;
  throw new Error(`unexpected token in definition: ${JSON.stringify(part)}`);
}

/** Every state of a definition, including those inside Map item processors, by name. */
export function allStates(definition: StateMachineDefinition): Record<string, Record<string, any>> {
  const states: Record<string, Record<string, any>> = {};
  const visit = (machine: { States: Record<string, Record<string, any>> }) => {
    for (const [name, state] of Object.entries(machine.States)) {
      states[name] = state;
      if (state.ItemProcessor) visit(state.ItemProcessor);
    }
  };
  visit(definition);
  return states;
}

/** Every IAM policy statement of the template, with the logical id of the policy holding it. */
export function policyStatements(template: Template): Array<{ policy: string; statement: Record<string, any> }> {
  const result: Array<{ policy: string; statement: Record<string, any> }> = [];
  for (const [policy, resource] of Object.entries(template.findResources('AWS::IAM::Policy'))) {
    for (const statement of resource.Properties.PolicyDocument.Statement) result.push({ policy, statement });
  }
  return result;
}

/** Array form of a statement's Action or Resource (which CloudFormation allows as a scalar). */
export function asList<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** A CloudFormation value rendered as a string, references as `${...}` markers. */
export function render(value: unknown): string {
  if (typeof value === 'string') return value;
  const join = (value as { 'Fn::Join'?: [string, unknown[]] })['Fn::Join'];
  if (join) return join[1].map(render).join(join[0]);
  const reference = value as { Ref?: string; 'Fn::GetAtt'?: [string, string] };
  if (reference.Ref) return `\${${reference.Ref}}`;
  if (reference['Fn::GetAtt']) return `\${${reference['Fn::GetAtt'].join('.')}}`;
  return JSON.stringify(value);
}
