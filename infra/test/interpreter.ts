/**
 * aws-local-stepfunctions 3.0.0 (the Amazon States Language interpreter the execution tests use),
 * loaded with two corrections where it departs from what Step Functions documents, and with the
 * one Node 22 API it needs defined for Node 20. Loading fails loudly if the package's code no
 * longer has the lines corrected here.
 *
 * - Intrinsic functions: the package deletes every backslash from every string an intrinsic
 *   function returns, so `States.JsonToString` of a value holding a quote or a backslash yields
 *   invalid JSON. Step Functions returns the JSON text as is; only the escapes of a string literal
 *   argument (`\'`, `\{`, `\}`, `\\`: "Intrinsic functions", Step Functions developer guide,
 *   reserved characters) are interpreted. The correction unescapes literal arguments and leaves
 *   results alone. (Escaped braces in a `States.Format` template are then placeholders; the
 *   definitions have none.)
 * - `Promise.withResolvers` (ECMAScript 2024), defined as the spec defines it when missing.
 */
import * as fs from 'node:fs';
import Module from 'node:module';
import * as path from 'node:path';
import type * as Interpreter from 'aws-local-stepfunctions';

const promiseConstructor = Promise as unknown as { withResolvers?: () => unknown };
promiseConstructor.withResolvers ??= () => {
  let resolve: unknown;
  let reject: unknown;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
};

const CORRECTIONS: Array<[string, string]> = [
  [
    '      result = result.replaceAll("\\\\", "");\n',
    '',
  ],
  [
    '      return arg.slice(1, lastSingleQuote);\n',
    '      return arg.slice(1, lastSingleQuote).replace(/\\\\([\'{}\\\\])/g, "$1");\n',
  ],
];

function load(): typeof Interpreter {
  const file = require.resolve('aws-local-stepfunctions');
  let source = fs.readFileSync(file, 'utf8');
  for (const [original, corrected] of CORRECTIONS) {
    if (!source.includes(original)) throw new Error(`${file} no longer contains ${JSON.stringify(original)}: review interpreter.ts`);
    source = source.replace(original, corrected);
  }
  const loaded = new Module(file, module) as Module & { _compile(code: string, filename: string): void };
  loaded.filename = file;
  loaded.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  loaded._compile(source, file);
  return loaded.exports as typeof Interpreter;
}

export const { StateMachine } = load();
