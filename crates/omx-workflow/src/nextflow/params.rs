//! Nextflow `params`: the defaults a pipeline gives them (`params.x = '...'` or `params { x =
//! '...' }` in its configs, `params.x = '...'` at the top of its scripts), so a
//! `container "${params.my_image}"` resolves to the default a run gets unless it passes
//! `--my_image`. Configs win over scripts (Nextflow applies the config after the script's
//! assignments); among configs, the pipeline's own `nextflow.config` wins over what it
//! includes. Settings inside a profile (or in a config a profile includes) only apply with
//! `-profile NAME`: they are kept apart, and a container that uses a parameter a profile sets
//! is evaluated once more for that profile.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;

use crate::expr::{evaluate, Expr, Scope, Value};
use crate::Location;

/// One `params.name = value`.
#[derive(Debug)]
pub(super) struct ParamSetting {
    /// Without the `params.` prefix; nested scopes joined with dots (`genomes.GRCh38`).
    pub name: String,
    pub expr: Expr,
    pub line: usize,
    /// The profile whose block sets it (`profiles { gpu { params.x = ... } }`).
    pub profile: Option<String>,
}

/// A parameter's value and where it is written.
pub(super) struct ParamDefault<'a> {
    expr: &'a Expr,
    location: Location,
}

/// One pipeline's parameters: the defaults a run gets, and what each profile sets instead.
#[derive(Default)]
pub(super) struct PipelineParams<'a> {
    defaults: HashMap<&'a str, ParamDefault<'a>>,
    by_profile: HashMap<&'a str, HashMap<&'a str, ParamDefault<'a>>>,
}

impl PipelineParams<'_> {
    /// The profiles that set any of `params` (names with their `params.` prefix), sorted.
    pub fn profiles_setting(&self, params: &[String]) -> Vec<&str> {
        let mut profiles: Vec<&str> = self
            .by_profile
            .iter()
            .filter(|(_, set)| {
                params
                    .iter()
                    .any(|p| set.contains_key(p.trim_start_matches("params.")))
            })
            .map(|(profile, _)| *profile)
            .collect();
        profiles.sort();
        profiles
    }
}

/// Collects the settings of a pipeline's files, given from the weakest to the strongest
/// with the profile a whole file applies under (a config included inside a profile block):
/// a later setting of the same name replaces an earlier one.
pub(super) fn pipeline_params<'a>(
    files_weakest_first: impl IntoIterator<Item = (&'a Path, &'a [ParamSetting], Option<&'a str>)>,
) -> PipelineParams<'a> {
    let mut params = PipelineParams::default();
    for (file, settings, file_profile) in files_weakest_first {
        for setting in settings {
            let value = ParamDefault {
                expr: &setting.expr,
                location: Location {
                    file: file.to_path_buf(),
                    line: setting.line,
                },
            };
            match setting.profile.as_deref().or(file_profile) {
                None => params.defaults.insert(setting.name.as_str(), value),
                Some(profile) => params
                    .by_profile
                    .entry(profile)
                    .or_default()
                    .insert(setting.name.as_str(), value),
            };
        }
    }
    params
}

/// How a Nextflow expression sees its variables: `params.x` has its pipeline default;
/// everything else (`task.ext.x`, `workflow.containerEngine`) is only known when it runs.
pub(super) struct PipelineScope<'a> {
    params: &'a PipelineParams<'a>,
    /// The profile a run is given, whose parameter settings win over the defaults.
    profile: Option<&'a str>,
    /// The parameters whose defaults the expression used, with where each is written.
    pub used_defaults: RefCell<Vec<(String, Location)>>,
    /// Every parameter the expression reads (`params.x`), set or not.
    pub params_read: RefCell<Vec<String>>,
    resolving: RefCell<Vec<String>>,
}

impl<'a> PipelineScope<'a> {
    pub fn new(params: &'a PipelineParams<'a>, profile: Option<&'a str>) -> PipelineScope<'a> {
        PipelineScope {
            params,
            profile,
            used_defaults: RefCell::default(),
            params_read: RefCell::default(),
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
        self.params_read.borrow_mut().push(name.to_string());
        let in_profile = self
            .profile
            .and_then(|profile| self.params.by_profile.get(profile)?.get(param));
        let Some(default) = in_profile.or_else(|| self.params.defaults.get(param)) else {
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
