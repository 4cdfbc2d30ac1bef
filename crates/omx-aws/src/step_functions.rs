//! Step Functions: starting and following executions of the deployed state machines.

use aws_config::SdkConfig;
use aws_sdk_sfn::types::ExecutionStatus as SdkStatus;

use crate::endpoint::{self, Endpoint};
use crate::error::AwsError;

/// The Step Functions client of one region.
#[derive(Debug, Clone)]
pub struct StepFunctions {
    client: aws_sdk_sfn::Client,
    endpoint: Endpoint,
}

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutionStatus {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Aborted,
}

/// An execution as last described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub arn: String,
    pub status: ExecutionStatus,
    /// The execution's output (JSON), once it succeeded.
    pub output: Option<String>,
    /// The error and cause of a failed execution.
    pub error: Option<String>,
    pub cause: Option<String>,
}

impl StepFunctions {
    pub fn new(config: &SdkConfig) -> StepFunctions {
        StepFunctions {
            client: aws_sdk_sfn::Client::new(config),
            endpoint: Endpoint::from_config(&endpoint::STEP_FUNCTIONS, config),
        }
    }

    /// The ARN of the state machine called `name` in this region, if there is one.
    pub async fn state_machine_arn(&self, name: &str) -> Result<Option<String>, AwsError> {
        let mut pages = self.client.list_state_machines().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| {
                AwsError::from_sdk(&self.endpoint, "ListStateMachines", name, error)
            })?;
            if let Some(found) = page.state_machines().iter().find(|m| m.name() == name) {
                return Ok(Some(found.state_machine_arn().to_string()));
            }
        }
        Ok(None)
    }

    /// Starts an execution called `name` (unique per state machine for 90 days) of
    /// `state_machine_arn` with `input` (JSON); returns the execution ARN.
    pub async fn start(
        &self,
        state_machine_arn: &str,
        name: &str,
        input: &str,
    ) -> Result<String, AwsError> {
        let started = self
            .client
            .start_execution()
            .state_machine_arn(state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk(&self.endpoint, "StartExecution", state_machine_arn, error)
            })?;
        Ok(started.execution_arn().to_string())
    }

    /// The output (JSON) of the last exit from the state called `state_name` in an execution,
    /// read from its history newest first: how results are recovered from an execution that
    /// went on to fail, whose own output is empty.
    pub async fn last_output_of_state(
        &self,
        execution_arn: &str,
        state_name: &str,
    ) -> Result<Option<String>, AwsError> {
        let mut pages = self
            .client
            .get_execution_history()
            .execution_arn(execution_arn)
            .reverse_order(true)
            .include_execution_data(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| {
                AwsError::from_sdk(&self.endpoint, "GetExecutionHistory", execution_arn, error)
            })?;
            let exited = page
                .events()
                .iter()
                .filter_map(|event| event.state_exited_event_details())
                .find(|details| details.name() == state_name);
            if let Some(exited) = exited {
                return Ok(exited.output().map(str::to_string));
            }
        }
        Ok(None)
    }

    pub async fn describe(&self, execution_arn: &str) -> Result<Execution, AwsError> {
        let described = self
            .client
            .describe_execution()
            .execution_arn(execution_arn)
            .send()
            .await
            .map_err(|error| {
                AwsError::from_sdk(&self.endpoint, "DescribeExecution", execution_arn, error)
            })?;
        let status = match described.status() {
            SdkStatus::Running | SdkStatus::PendingRedrive => ExecutionStatus::Running,
            SdkStatus::Succeeded => ExecutionStatus::Succeeded,
            SdkStatus::TimedOut => ExecutionStatus::TimedOut,
            SdkStatus::Aborted => ExecutionStatus::Aborted,
            _ => ExecutionStatus::Failed,
        };
        Ok(Execution {
            arn: execution_arn.to_string(),
            status,
            output: described.output().map(str::to_string),
            error: described.error().map(str::to_string),
            cause: described.cause().map(str::to_string),
        })
    }
}
