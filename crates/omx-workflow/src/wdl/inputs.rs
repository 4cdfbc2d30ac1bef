//! WDL inputs files: Cromwell-style JSON of `"workflow.input"` keys, read as values that
//! replace declarations' defaults.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::expr::{Candidate, Value};
use crate::Location;

/// Values for workflow and task inputs, from a Cromwell-style inputs JSON file:
/// `{"wf.docker": "ubuntu:22.04", "wf.align.docker": "..."}`.
#[derive(Debug, Clone, PartialEq)]
pub struct WdlInputs {
    file: PathBuf,
    values: HashMap<String, (serde_json::Value, usize)>,
}

/// Why an inputs file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputsError {
    #[error("the inputs file is not valid JSON: line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("the inputs file must be a JSON object of \"workflow.input\" keys")]
    NotAnObject,
}

impl WdlInputs {
    /// Reads an inputs file; `file` is how locations name it.
    pub fn parse(file: impl Into<PathBuf>, text: &str) -> Result<WdlInputs, InputsError> {
        let json: serde_json::Value =
            serde_json::from_str(text).map_err(|e| InputsError::Syntax {
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
        let serde_json::Value::Object(object) = json else {
            return Err(InputsError::NotAnObject);
        };
        let values = object
            .into_iter()
            .map(|(key, value)| {
                let line = line_of_key(text, &key);
                (key, (value, line))
            })
            .collect();
        Ok(WdlInputs {
            file: file.into(),
            values,
        })
    }

    pub(super) fn value(&self, key: &str) -> Option<Value> {
        let (json, line) = self.values.get(key)?;
        let location = Location {
            file: self.file.clone(),
            line: *line,
        };
        Some(self.json_value(json, key, &location))
    }

    /// A JSON value as WDL takes it: a string, an array of strings (a 1.1 `container` list),
    /// or an object (a struct such as GATK-SV's `RuntimeAttr` override) whose members are
    /// read the same way.
    fn json_value(&self, json: &serde_json::Value, key: &str, location: &Location) -> Value {
        let not_a_string = || {
            Value::unknown(format!(
                "`{key}` in {} is not a string or an array of strings",
                self.file.display()
            ))
        };
        match json {
            serde_json::Value::Null => Value::Undefined,
            serde_json::Value::String(text) => Value::known(text.clone(), location.clone()),
            serde_json::Value::Array(items) => {
                let mut candidates = Vec::new();
                for item in items {
                    let Some(text) = item.as_str() else {
                        return not_a_string();
                    };
                    candidates.push(Candidate::Known {
                        text: text.to_string(),
                        location: location.clone(),
                    });
                }
                Value::Candidates(candidates)
            }
            serde_json::Value::Object(members) => Value::Candidates(vec![Candidate::Record(
                members
                    .iter()
                    .map(|(name, member)| {
                        let member_key = format!("{key}.{name}");
                        (name.clone(), self.json_value(member, &member_key, location))
                    })
                    .collect(),
            )]),
            _ => not_a_string(),
        }
    }
}

/// The line where `"key"` is first written in `text` (0 when it is written with escapes).
fn line_of_key(text: &str, key: &str) -> usize {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    text.find(&quoted)
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap_or(0)
}
