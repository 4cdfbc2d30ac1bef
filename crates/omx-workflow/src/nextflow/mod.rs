//! Nextflow: `container` directives in scripts, `process.container` and selector `container`
//! settings in configuration files, and `docker.registry`, which Nextflow puts in front of
//! image names that have no registry host.
//!
//! A pipeline is the directory holding a `nextflow.config`: its registry setting applies to
//! every script and config under that directory and to the configs it includes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};

mod params;

use crate::expr::{self, evaluate, source_text};
use crate::image::ContainerSite;
use crate::lexer::{matching_close, tokenize, Dialect, Token};
use crate::{
    resolve_relative, Language, Location, Note, ScanReport, SourceFile, Warning, WarningKind,
};
use params::{pipeline_params, ParamSetting, PipelineParams, PipelineScope};

/// The pipeline configuration file Nextflow reads from a pipeline's directory.
const PIPELINE_CONFIG: &str = "nextflow.config";

/// Keywords that open blocks which are not configuration scopes.
const CONTROL_WORDS: [&str; 8] = [
    "if", "else", "for", "while", "try", "catch", "finally", "switch",
];

/// A block enclosing a statement.
#[derive(Debug, Clone, PartialEq)]
enum Block {
    /// A configuration scope: `process`, `profiles`, `docker`, `test` (a profile's name).
    Scope(String),
    /// A process selector, as written: `withName: 'FOO'`, `withLabel: big`.
    Selector(String),
    /// Anything else: `if`, `else`, a process body in a script.
    Other,
}

/// The blocks enclosing a statement, outermost first.
type ScopePath = [Block];

/// What one script or configuration file says about containers.
#[derive(Debug, Default)]
struct ParsedFile {
    containers: Vec<ContainerDeclaration>,
    registries: Vec<RegistrySetting>,
    includes: Vec<(String, usize)>,
    params: Vec<ParamSetting>,
}

#[derive(Debug)]
struct ContainerDeclaration {
    expr: expr::Expr,
    source: String,
    line: usize,
    /// The profile whose block sets it, for a config setting that applies only with
    /// `-profile NAME`.
    profile: Option<String>,
    /// The selector of a config setting (`withName: 'FOO'`), whose processes it gives this
    /// container instead of their own `container` directive.
    selector: Option<String>,
}

#[derive(Debug)]
struct RegistrySetting {
    registry: String,
    in_profile: bool,
}

/// Scans Nextflow scripts and configuration files together, so registry settings reach the
/// scripts of their pipeline.
pub(crate) fn scan(sources: &[&SourceFile]) -> ScanReport {
    let parsed: BTreeMap<&Path, ParsedFile> = sources
        .iter()
        .map(|s| (s.path.as_path(), parse_file(s)))
        .collect();
    let pipeline_of = pipelines(&parsed);
    let registry_of_pipeline: HashMap<&Path, String> = pipeline_of
        .values()
        .filter_map(|root| Some((*root, pipeline_registry(root, &parsed, &pipeline_of)?)))
        .collect();

    let params_of_pipeline: HashMap<&Path, PipelineParams> = pipeline_of
        .values()
        .map(|root| (*root, params_of(root, &parsed, &pipeline_of)))
        .collect();
    let no_params = PipelineParams::new();

    let mut report = ScanReport::default();
    for (path, file) in &parsed {
        let pipeline = pipeline_of.get(path);
        let registry = pipeline
            .and_then(|root| registry_of_pipeline.get(root))
            .map(String::as_str);
        let own_params;
        let params = match pipeline.and_then(|root| params_of_pipeline.get(root)) {
            Some(params) => params,
            None if file.params.is_empty() => &no_params,
            None => {
                own_params = pipeline_params([(*path, file.params.as_slice())]);
                &own_params
            }
        };
        for container in &file.containers {
            let location = Location {
                file: path.to_path_buf(),
                line: container.line,
            };
            let site = ContainerSite {
                location: location.clone(),
                expression: &container.source,
                context: "",
                default_registry: registry,
            };
            let scope = PipelineScope::new(params);
            site.record(evaluate(&container.expr, path, &scope), &mut report);
            for (param, written_at) in scope.used_defaults.into_inner() {
                let flag = param.trim_start_matches("params.");
                report.notes.push(Note {
                    location: location.clone(),
                    message: format!(
                        "the image is the default of `{param}` ({written_at}); a run can \
                         give another with --{flag}"
                    ),
                });
            }
            if let Some(selector) = &container.selector {
                report.notes.push(Note {
                    location: location.clone(),
                    message: format!(
                        "the processes `{selector}` selects run this container instead of \
                         their own `container` directive (a config setting wins over it)"
                    ),
                });
            }
            if let Some(profile) = &container.profile {
                report.notes.push(Note {
                    location,
                    message: format!("this container is used only with `-profile {profile}`"),
                });
            }
        }
        for (include, line) in &file.includes {
            let target = resolve_relative(path, include);
            if !parsed.contains_key(target.as_path()) {
                report.warnings.push(Warning {
                    location: Location {
                        file: path.to_path_buf(),
                        line: *line,
                    },
                    kind: WarningKind::Unreadable,
                    message: format!(
                        "the included config `{include}` ({}) was not found; the images it \
                         names are not listed",
                        target.display()
                    ),
                });
            }
        }
    }
    report
}

/// The literal paths of `includeConfig` statements in a configuration file, with their lines.
pub(crate) fn included_configs(text: &str) -> Vec<(String, usize)> {
    let source = SourceFile {
        path: PathBuf::new(),
        text: text.to_string(),
        language: Language::NextflowConfig,
    };
    parse_file(&source).includes
}

/// The pipeline directory each file belongs to. Nextflow reads only the `nextflow.config` of
/// the pipeline it launches, and the configs that one includes: a `nextflow.config` that
/// another config includes (nf-core modules and subworkflows keep their `withName` settings
/// in one) or that sits below another pipeline's directory (nf-test's `tests/nextflow.config`)
/// does not make a pipeline of its folder. Configs reached by `includeConfig` from a
/// pipeline's `nextflow.config` belong to it; any other file to the nearest enclosing
/// pipeline directory.
fn pipelines<'a>(parsed: &BTreeMap<&'a Path, ParsedFile>) -> HashMap<&'a Path, &'a Path> {
    let by_path: HashMap<PathBuf, &Path> = parsed.keys().map(|p| (p.to_path_buf(), *p)).collect();
    let included: HashSet<&Path> = parsed
        .iter()
        .flat_map(|(config, file)| {
            file.includes
                .iter()
                .filter_map(|(include, _)| by_path.get(&resolve_relative(config, include)))
                .copied()
                .filter(move |target| target != config)
        })
        .collect();
    let unincluded_roots: HashSet<&Path> = parsed
        .keys()
        .filter(|p| p.file_name().is_some_and(|name| name == PIPELINE_CONFIG))
        .filter(|p| !included.contains(*p))
        .map(|p| p.parent().unwrap_or(Path::new("")))
        .collect();
    let roots: HashSet<&Path> = unincluded_roots
        .iter()
        .filter(|root| {
            !root
                .ancestors()
                .skip(1)
                .any(|dir| unincluded_roots.contains(dir))
        })
        .copied()
        .collect();
    let mut pipeline_of: HashMap<&Path, &Path> = HashMap::new();
    let mut sorted_roots: Vec<&Path> = roots.iter().copied().collect();
    sorted_roots.sort();
    for root in sorted_roots {
        let mut queue = VecDeque::from([by_path[&root.join(PIPELINE_CONFIG)]]);
        while let Some(config) = queue.pop_front() {
            if pipeline_of.contains_key(config) {
                continue;
            }
            pipeline_of.insert(config, root);
            for (include, _) in &parsed[config].includes {
                if let Some(target) = by_path.get(&resolve_relative(config, include)) {
                    queue.push_back(target);
                }
            }
        }
    }
    for path in parsed.keys() {
        if pipeline_of.contains_key(path) {
            continue;
        }
        if let Some(root) = path.ancestors().skip(1).find(|dir| roots.contains(dir)) {
            pipeline_of.insert(path, root);
        }
    }
    pipeline_of
}

/// The `docker.registry` of a pipeline: a setting outside profiles wins over one inside a
/// profile, and the pipeline's own `nextflow.config` over the configs it includes.
fn pipeline_registry(
    root: &Path,
    parsed: &BTreeMap<&Path, ParsedFile>,
    pipeline_of: &HashMap<&Path, &Path>,
) -> Option<String> {
    let main_config = root.join(PIPELINE_CONFIG);
    let mut members: Vec<&Path> = parsed
        .keys()
        .filter(|p| pipeline_of.get(*p) == Some(&root))
        .copied()
        .collect();
    members.sort_by_key(|p| *p != main_config.as_path());
    for in_profile in [false, true] {
        let chosen = members.iter().find_map(|path| {
            parsed[path]
                .registries
                .iter()
                .rev()
                .find(|setting| setting.in_profile == in_profile)
        });
        if let Some(setting) = chosen {
            return Some(setting.registry.clone());
        }
    }
    None
}

/// The parameter defaults of a pipeline: its scripts' assignments, then its included
/// configs', then its own `nextflow.config`'s, each later one winning.
fn params_of<'a>(
    root: &Path,
    parsed: &'a BTreeMap<&'a Path, ParsedFile>,
    pipeline_of: &HashMap<&Path, &Path>,
) -> PipelineParams<'a> {
    let main_config = root.join(PIPELINE_CONFIG);
    let strength = |path: &Path| {
        if path == main_config {
            2
        } else if path.extension().is_some_and(|e| e == "config") {
            1
        } else {
            0
        }
    };
    let mut members: Vec<(&Path, &[ParamSetting])> = parsed
        .iter()
        .filter(|(path, _)| pipeline_of.get(*path) == Some(&root))
        .map(|(path, file)| (*path, file.params.as_slice()))
        .collect();
    members.sort_by_key(|(path, _)| strength(path));
    pipeline_params(members)
}

fn parse_file(source: &SourceFile) -> ParsedFile {
    let tokens = tokenize(&source.text, Dialect::Groovy);
    let mut parsed = ParsedFile::default();
    let is_config = source.language == Language::NextflowConfig;
    let mut scope = Vec::new();
    walk_block(
        &tokens,
        &source.text,
        &mut scope,
        &mut |statement, scope| {
            if is_config {
                read_config_statement(statement, scope, &source.text, &mut parsed);
            } else {
                read_script_statement(statement, scope, &source.text, &mut parsed);
            }
        },
    );
    parsed
}

/// A `container` directive in a process, and `params.x = ...` at the top of a script.
fn read_script_statement(
    statement: &[Token],
    scope: &ScopePath,
    text: &str,
    parsed: &mut ParsedFile,
) {
    if scope.is_empty() {
        read_param_assignment(statement, text, parsed);
    }
    if !statement[0].is_ident("container") {
        return;
    }
    let value = match statement.get(1) {
        Some(t) if t.is_punct("=") => &statement[2..],
        Some(t) if t.is_punct(".") || t.is_punct("?.") => return,
        _ => &statement[1..],
    };
    if !value.is_empty() {
        parsed
            .containers
            .push(container_declaration(&statement[0], value, text));
    }
}

/// `process.container = ...` (in any of its spellings), `docker.registry = ...` and
/// `includeConfig '...'`.
fn read_config_statement(
    statement: &[Token],
    scope: &ScopePath,
    text: &str,
    parsed: &mut ParsedFile,
) {
    if statement[0].is_ident("includeConfig") {
        if let [path] = &statement[1..] {
            if let Some(path) = path.plain_string() {
                parsed.includes.push((path, statement[0].line));
            }
        }
        return;
    }
    let Some(equals) = statement.iter().position(|t| t.is_punct("=")) else {
        return;
    };
    let Some(names) = property_path(&statement[..equals]) else {
        return;
    };
    let mut key: Vec<&str> = scope
        .iter()
        .filter_map(|block| match block {
            Block::Scope(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    key.extend(names);
    let in_profile = key.first() == Some(&"profiles") && key.len() > 2;
    let profile = in_profile.then(|| key[1].to_string());
    if in_profile {
        key.drain(..2);
    }
    let value = &statement[equals + 1..];
    match key.as_slice() {
        ["process", "container"] if !value.is_empty() => {
            let mut declaration = container_declaration(&statement[0], value, text);
            declaration.profile = profile;
            declaration.selector = scope.iter().rev().find_map(|block| match block {
                Block::Selector(selector) => Some(selector.clone()),
                _ => None,
            });
            parsed.containers.push(declaration);
        }
        ["params", name @ ..] if !in_profile => {
            parsed
                .params
                .extend(param_setting(name, value, text, statement[0].line));
        }
        ["docker", "registry"] => {
            if let [registry] = value {
                if let Some(registry) = registry.plain_string() {
                    parsed.registries.push(RegistrySetting {
                        registry,
                        in_profile,
                    });
                }
            }
        }
        _ => {}
    }
}

/// `params.name = value` at the top of a script.
fn read_param_assignment(statement: &[Token], text: &str, parsed: &mut ParsedFile) {
    let Some(equals) = statement.iter().position(|t| t.is_punct("=")) else {
        return;
    };
    if let Some(["params", name @ ..]) = property_path(&statement[..equals]).as_deref() {
        let value = &statement[equals + 1..];
        parsed
            .params
            .extend(param_setting(name, value, text, statement[0].line));
    }
}

/// The setting of the parameter `name` (its path below `params`) to `value`.
fn param_setting(name: &[&str], value: &[Token], text: &str, line: usize) -> Option<ParamSetting> {
    (!name.is_empty() && !value.is_empty()).then(|| ParamSetting {
        name: name.join("."),
        expr: expr::parse(value, text, Dialect::Groovy),
        line,
    })
}

fn container_declaration(keyword: &Token, value: &[Token], text: &str) -> ContainerDeclaration {
    ContainerDeclaration {
        expr: expr::parse(value, text, Dialect::Groovy),
        source: source_text(text, value),
        line: keyword.line,
        profile: None,
        selector: None,
    }
}

/// The names of `a.b.c`, if `tokens` is one.
fn property_path(tokens: &[Token]) -> Option<Vec<&str>> {
    let mut names = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if i % 2 == 0 {
            names.push(token.ident()?);
        } else if !token.is_punct(".") {
            return None;
        }
    }
    (!names.is_empty() && tokens.len() % 2 == 1).then_some(names)
}

/// Calls `on_statement` for every statement, with its enclosing scopes.
fn walk_block(
    tokens: &[Token],
    text: &str,
    scope: &mut Vec<Block>,
    on_statement: &mut dyn FnMut(&[Token], &ScopePath),
) {
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].is_newline() || tokens[i].is_punct(";") || tokens[i].is_punct("}") {
            i += 1;
            continue;
        }
        let end = statement_end(tokens, i);
        let head = &tokens[i..end];
        if end < tokens.len() && tokens[end].is_punct("{") {
            let close = matching_close(tokens, end);
            if takes_closure(head) {
                on_statement(&tokens[i..=close], scope);
            } else {
                scope.push(scope_name(head, text));
                walk_block(&tokens[end + 1..close], text, scope, on_statement);
                scope.pop();
            }
            i = close + 1;
            continue;
        }
        if !head.is_empty() {
            on_statement(head, scope);
        }
        i = end.max(i + 1);
    }
}

/// `container { ... }` and `name = { ... }`: the braces hold a value, not a scope.
fn takes_closure(head: &[Token]) -> bool {
    matches!(head, [keyword] if keyword.is_ident("container"))
        || head.last().is_some_and(|t| t.is_punct("="))
}

fn scope_name(head: &[Token], text: &str) -> Block {
    let is_selector = head.len() > 2
        && (head[0].is_ident("withName") || head[0].is_ident("withLabel"))
        && head[1].is_punct(":");
    if is_selector {
        return Block::Selector(source_text(text, head));
    }
    match property_path(head) {
        Some(names) if !(names.len() == 1 && CONTROL_WORDS.contains(&names[0])) => {
            Block::Scope(names.join("."))
        }
        _ => Block::Other,
    }
}

/// Where the statement starting at `start` ends: a newline, `;`, `{` or `}` outside brackets.
/// A newline does not end it after or before an operator, or inside an unfinished `a ? b : c`.
fn statement_end(tokens: &[Token], start: usize) -> usize {
    const CONTINUES_AFTER: [&str; 9] = ["?", "?:", "+", "&&", "||", "=", ",", ".", "?."];
    const CONTINUES_BEFORE: [&str; 7] = ["?", ":", "?:", ".", "?.", "&&", "||"];
    let mut depth = 0usize;
    let mut open_conditionals = 0usize;
    let mut last_significant: Option<&Token> = None;
    for (i, token) in tokens.iter().enumerate().skip(start) {
        if token.is_newline() {
            if depth > 0 {
                continue;
            }
            let next = tokens[i..].iter().find(|t| !t.is_newline());
            let continues = last_significant
                .is_some_and(|t| CONTINUES_AFTER.iter().any(|p| t.is_punct(p)))
                || last_significant.is_some_and(|t| t.is_punct(":") && open_conditionals > 0)
                || next.is_some_and(|t| CONTINUES_BEFORE.iter().any(|p| t.is_punct(p)));
            if !continues {
                return i;
            }
            continue;
        }
        match () {
            _ if token.is_punct("(") || token.is_punct("[") => depth += 1,
            _ if token.is_punct(")") || token.is_punct("]") => depth = depth.saturating_sub(1),
            _ if depth == 0 && ["{", "}", ";"].iter().any(|p| token.is_punct(p)) => return i,
            _ if depth == 0 && token.is_punct("?") => open_conditionals += 1,
            _ if depth == 0 && token.is_punct(":") => {
                open_conditionals = open_conditionals.saturating_sub(1)
            }
            _ => {}
        }
        last_significant = Some(token);
    }
    tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str, text: &str) -> SourceFile {
        let language = if path.ends_with(".config") {
            Language::NextflowConfig
        } else {
            Language::Nextflow
        };
        SourceFile {
            path: path.into(),
            text: text.into(),
            language,
        }
    }

    fn images(report: &ScanReport) -> Vec<(String, usize)> {
        report
            .findings
            .iter()
            .map(|f| (f.image.clone(), f.location.line))
            .collect()
    }

    #[test]
    fn directive_forms_in_scripts() {
        let script = source(
            "main.nf",
            "process A {\n  container 'a:1'\n  input:\n  path x\n}\n\
             process B { container \"b:1\"; cpus 2 }\n\
             process C {\n  container = 'c:1' // comment 'd:1'\n}\n\
             process D {\n  container { task.attempt > 1 ? 'd:2' : 'd:1' }\n}\n\
             def container = 'not:directive'\nworkflow { x.container }\n",
        );
        let mut report = scan(&[&script]);
        report.sort_and_dedup();
        assert_eq!(
            images(&report),
            vec![
                ("a:1".into(), 2),
                ("b:1".into(), 6),
                ("c:1".into(), 8),
                ("d:1".into(), 11),
                ("d:2".into(), 11)
            ]
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn old_nf_core_if_else_form_keeps_the_docker_image() {
        let script = source(
            "main.nf",
            "process FASTQC {\n    if (workflow.containerEngine == 'singularity' && !params.pull) {\n        container \"https://depot.galaxyproject.org/singularity/fastqc:0.11.9--0\"\n    } else {\n        container \"quay.io/biocontainers/fastqc:0.11.9--0\"\n    }\n}\n",
        );
        let report = scan(&[&script]);
        assert_eq!(
            images(&report),
            vec![("quay.io/biocontainers/fastqc:0.11.9--0".into(), 5)]
        );
        assert_eq!(report.skipped.len(), 1);
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn config_scopes_selectors_profiles_and_registry() {
        let config = source(
            "p/nextflow.config",
            "docker.registry = 'quay.io'\n\
             process {\n  withName: 'FOO' {\n    container = 'biocontainers/foo:1'\n  }\n  withLabel: big { container = \"ghcr.io/x/big:2\" }\n  cpus = { 2 * task.attempt }\n}\n\
             profiles {\n  test {\n    process.container = 'ubuntu:22.04'\n    docker.registry = 'elsewhere.io'\n  }\n}\n\
             params { container = 'not:aprocess' }\n",
        );
        let script = source(
            "p/modules/x/main.nf",
            "process X { container 'biocontainers/x:1' }",
        );
        let outside = source("q/main.nf", "process Y { container 'biocontainers/y:1' }");
        let mut report = scan(&[&config, &script, &outside]);
        report.sort_and_dedup();
        assert_eq!(
            report.manifest(),
            vec![
                "biocontainers/y:1",
                "ghcr.io/x/big:2",
                "quay.io/biocontainers/foo:1",
                "quay.io/biocontainers/x:1",
                "quay.io/ubuntu:22.04"
            ]
        );
    }

    #[test]
    fn includes_are_part_of_the_pipeline_and_missing_ones_warn() {
        let config = source(
            "nextflow.config",
            "includeConfig 'conf/base.config'\nincludeConfig 'conf/missing.config'\n\
             includeConfig params.custom ? \"${params.custom}/x.config\" : '/dev/null'\n",
        );
        assert_eq!(
            included_configs(&config.text),
            vec![
                ("conf/base.config".to_string(), 1),
                ("conf/missing.config".to_string(), 2)
            ]
        );
        let base = source("conf/base.config", "docker { registry = 'quay.io' }\n");
        let script = source("main.nf", "process A {\n container 'a/b:1'\n}");
        let report = scan(&[&config, &base, &script]);
        assert_eq!(images(&report), vec![("quay.io/a/b:1".into(), 2)]);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].location.line, 2);
        assert_eq!(report.warnings[0].kind, WarningKind::Unreadable);
    }

    #[test]
    fn expressions_become_warnings_at_the_directive() {
        let script = source(
            "main.nf",
            "process A {\n  container \"${params.image}\"\n}\nprocess B {\n  container params.b ?: 'b:1'\n}\n",
        );
        let report = scan(&[&script]);
        assert_eq!(images(&report), vec![("b:1".into(), 5)]);
        let warnings: Vec<(usize, &str)> = report
            .warnings
            .iter()
            .map(|w| (w.location.line, w.message.as_str()))
            .collect();
        assert_eq!(
            warnings,
            vec![
                (
                    2,
                    "cannot resolve the container image `\"${params.image}\"`: `params.image` is only known when the pipeline runs"
                ),
                (
                    5,
                    "cannot resolve the container image `params.b ?: 'b:1'`: `params.b` is only known when the pipeline runs"
                )
            ]
        );
    }
}
