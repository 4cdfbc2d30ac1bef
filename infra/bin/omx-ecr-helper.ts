#!/usr/bin/env node
import { App } from 'aws-cdk-lib';
import { addOmxStacks } from '../lib/app';
import { AppConfigError } from '../lib/app-config';
import { SettingsError, readSettings } from '../lib/settings';

const app = new App();
try {
  addOmxStacks(app, readSettings((key) => app.node.tryGetContext(key)));
} catch (error) {
  if (error instanceof SettingsError || error instanceof AppConfigError) {
    // A usage problem: say what to fix, without a stack trace.
    console.error(`omx-ecr-helper infra: ${error.message}`);
    process.exit(1);
  }
  throw error;
}
app.synth();
