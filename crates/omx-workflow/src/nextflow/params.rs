//! Nextflow `params`: the defaults a pipeline gives them (`params.x = '...'` or `params { x =
//! '...' }` in its configs, `params.x = '...'` at the top of its scripts), so a
//! `container "${params.my_image}"` resolves to the default a run gets unless it passes
//! `--my_image`. Configs win over scripts (Nextflow applies the config after the script's
//! assignments); among configs, the pipeline's own `nextflow.config` wins over what it
//! includes. Settings inside a profile only apply with `-profile`, so they are not defaults.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use crate::expr::{evaluate, Expr, Scope, Value};
use crate::Location;

/// One `params.name = value` written outside profiles.
#[derive(Debug)]
pub(super) struct ParamSetting {
    /// Without the `params.` prefix; nested scopes joined with dots (`genomes.GRCh38`).
    pub name: String,
    pub expr: Expr,
    pub line: usize,
}

/// A parameter's default and where it is written.
pub(super) struct ParamDefault<'a> {
    expr: &'a Expr,
    location: Location,
}

/// The defaults of one pipeline's parameters.
pub(super) type PipelineParams<'a> = HashMap<&'a str, ParamDefault<'a>>;

/// Collects the settings of a pipeline's files, given from the weakest to the strongest:
/// a later setting of the same name replaces an earlier one.
pub(super) fn pipeline_params<'a>(
    files_weakest_first: impl IntoIterator<Item = (&'a Path, &'a [ParamSetting])>,
) -> PipelineParams<'a> {
    let mut params = PipelineParams::new();
    for (file, settings) in files_weakest_first {
        for setting in settings {
            let location = Location {
                file: file.to_path_buf(),
                line: setting.line,
            };
            params.insert(
                setting.name.as_str(),
                ParamDefault {
                    expr: &setting.expr,
                    location,
                },
            );
        }
    }
    params
}

/// How a Nextflow expression sees its variables: `params.x` has its pipeline default;
/// everything else (`task.ext.x`, `workflow.containerEngine`) is only known when it runs.
pub(super) struct PipelineScope<'a> {
    params: &'a PipelineParams<'a>,
    /// The parameters whose defaults the expression used, with where each is written.
    pub used_defaults: RefCell<Vec<(String, Location)>>,
    resolving: RefCell<Vec<String>>,
}

impl<'a> PipelineScope<'a> {
    pub fn new(params: &'a PipelineParams<'a>) -> PipelineScope<'a> {
        PipelineScope {
            params,
            used_defaults: RefCell::default(),
            resolving: RefCell::default(),
        }
    }
}

impl Scope for PipelineScope<'_> {
    fn lookup(&self, name: &str) -> Value {
        if name == "null" {
            return Value::Undefined;
        }
        let run_time_only =
            || Value::unknown(format!("`{name}` is only known when the pipeline runs"));
        let Some(param) = name.strip_prefix("params.") else {
            return run_time_only();
        };
        let Some(default) = self.params.get(param) else {
            return run_time_only();
        };
        if self.resolving.borrow().iter().any(|p| p == param) {
            return Value::unknown(format!("`{name}` refers to itself"));
        }
        self.resolving.borrow_mut().push(param.to_string());
        let value = evaluate(default.expr, &default.location.file, self);
        self.resolving.borrow_mut().pop();
        if value == Value::Undefined {
            return Value::unknown(format!(
                "`{name}` has no default (it is null); a run gives it with --{param}"
            ));
        }
        // Only the parameter the directive names: a run overrides that one.
        if self.resolving.borrow().is_empty() {
            self.used_defaults
                .borrow_mut()
                .push((name.to_string(), default.location.clone()));
        }
        value
    }
}
