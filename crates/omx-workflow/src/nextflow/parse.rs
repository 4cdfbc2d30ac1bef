//! Reading Nextflow scripts and configs: `container` directives and settings, registry and
//! parameter settings, and `includeConfig` statements, each with the blocks around it.

use omx_core::workflow_map::ProcessSelector;

use crate::expr::{self, source_text};
use crate::lexer::{matching_close, tokenize, Dialect, Token};
use crate::{Language, SourceFile};

use super::params::ParamSetting;

/// An `includeConfig 'path'` statement.
#[derive(Debug)]
pub(super) struct Include {
    pub(super) path: String,
    pub(super) line: usize,
    /// The profile whose block holds it: the config applies only with `-profile NAME`.
    pub(super) profile: Option<String>,
}

/// The pipeline configuration file Nextflow reads from a pipeline's directory.
pub(super) const PIPELINE_CONFIG: &str = "nextflow.config";

/// Keywords that open blocks which are not configuration scopes.
pub(super) const CONTROL_WORDS: [&str; 8] = [
    "if", "else", "for", "while", "try", "catch", "finally", "switch",
];

/// A block enclosing a statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Block {
    /// A configuration scope: `process`, `profiles`, `docker`, `test` (a profile's name).
    Scope(String),
    /// A process selector, as written: `withName: 'FOO'`, `withLabel: big`,
    /// `'withName:BAR|BAZ'`.
    Selector(String),
    /// A process definition of a script: `process FOO`.
    Process(String),
    /// Anything else: `if`, `else`, `workflow`.
    Other,
}

/// The blocks enclosing a statement, outermost first.
pub(super) type ScopePath = [Block];

/// What one script or configuration file says about containers.
#[derive(Debug, Default)]
pub(super) struct ParsedFile {
    pub(super) containers: Vec<ContainerDeclaration>,
    pub(super) registries: Vec<RegistrySetting>,
    pub(super) includes: Vec<Include>,
    pub(super) params: Vec<ParamSetting>,
}

#[derive(Debug)]
pub(super) struct ContainerDeclaration {
    pub(super) expr: expr::Expr,
    pub(super) source: String,
    pub(super) line: usize,
    /// The profile whose block sets it, for a config setting that applies only with
    /// `-profile NAME`.
    pub(super) profile: Option<String>,
    /// The selector of a config setting (`withName: 'FOO'`), whose processes it gives this
    /// container instead of their own `container` directive.
    pub(super) selector: Option<String>,
    /// The processes the container is set for: the process a script's directive is in, or a
    /// config setting's selector (every process without one); `None` outside any process.
    pub(super) process: Option<ProcessSelector>,
}

#[derive(Debug)]
pub(super) struct RegistrySetting {
    pub(super) registry: String,
    pub(super) in_profile: bool,
}

pub(super) fn parse_file(source: &SourceFile) -> ParsedFile {
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
pub(super) fn read_script_statement(
    statement: &[Token],
    scope: &ScopePath,
    text: &str,
    parsed: &mut ParsedFile,
) {
    match scope {
        [] => read_param_assignment(statement, &[], text, parsed),
        [Block::Scope(params)] if params == "params" => {
            read_param_assignment(statement, &["params"], text, parsed)
        }
        _ => {}
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
        let mut declaration = container_declaration(&statement[0], value, text);
        declaration.process = scope.iter().find_map(|block| match block {
            Block::Process(name) => Some(ProcessSelector::WithName(name.clone())),
            _ => None,
        });
        parsed.containers.push(declaration);
    }
}

/// `process.container = ...` (in any of its spellings), `docker.registry = ...` and
/// `includeConfig '...'`.
pub(super) fn read_config_statement(
    statement: &[Token],
    scope: &ScopePath,
    text: &str,
    parsed: &mut ParsedFile,
) {
    if statement[0].is_ident("includeConfig") {
        if let [path] = &statement[1..] {
            if let Some(path) = path.plain_string() {
                let profile = match scope {
                    [Block::Scope(profiles), Block::Scope(name), ..] if profiles == "profiles" => {
                        Some(name.clone())
                    }
                    _ => None,
                };
                parsed.includes.push(Include {
                    path,
                    line: statement[0].line,
                    profile,
                });
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
            declaration.process = Some(
                declaration
                    .selector
                    .as_deref()
                    .and_then(process_selector)
                    .unwrap_or(ProcessSelector::AllProcesses),
            );
            parsed.containers.push(declaration);
        }
        ["params", name @ ..] => {
            let mut setting = param_setting(name, value, text, statement[0].line);
            if let Some(setting) = &mut setting {
                setting.profile = profile;
            }
            parsed.params.extend(setting);
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

/// `params.name = value` at the top of a script, or `name = value` in its `params { }` block
/// (`prefix` is `params` there).
pub(super) fn read_param_assignment(
    statement: &[Token],
    prefix: &[&str],
    text: &str,
    parsed: &mut ParsedFile,
) {
    let Some(equals) = statement.iter().position(|t| t.is_punct("=")) else {
        return;
    };
    let target = &statement[..equals];
    let names = match target {
        // Nextflow's typed parameters: `params { input: Path = 'x' }`.
        [name, colon, ..] if colon.is_punct(":") => name.ident().map(|n| vec![n]),
        _ => property_path(target),
    };
    let mut key: Vec<&str> = prefix.to_vec();
    key.extend(names.unwrap_or_default());
    if let ["params", name @ ..] = key.as_slice() {
        let value = &statement[equals + 1..];
        parsed
            .params
            .extend(param_setting(name, value, text, statement[0].line));
    }
}

/// The setting of the parameter `name` (its path below `params`) to `value`.
pub(super) fn param_setting(
    name: &[&str],
    value: &[Token],
    text: &str,
    line: usize,
) -> Option<ParamSetting> {
    (!name.is_empty() && !value.is_empty()).then(|| ParamSetting {
        name: name.join("."),
        expr: expr::parse(value, text, Dialect::Groovy),
        line,
        profile: None,
    })
}

pub(super) fn container_declaration(
    keyword: &Token,
    value: &[Token],
    text: &str,
) -> ContainerDeclaration {
    ContainerDeclaration {
        expr: expr::parse(value, text, Dialect::Groovy),
        source: source_text(text, value),
        line: keyword.line,
        profile: None,
        selector: None,
        process: None,
    }
}

/// The names of `a.b.c`, if `tokens` is one.
pub(super) fn property_path(tokens: &[Token]) -> Option<Vec<&str>> {
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
pub(super) fn walk_block(
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
pub(super) fn takes_closure(head: &[Token]) -> bool {
    matches!(head, [keyword] if keyword.is_ident("container"))
        || head.last().is_some_and(|t| t.is_punct("="))
}

pub(super) fn scope_name(head: &[Token], text: &str) -> Block {
    let is_selector = head.len() > 2
        && (head[0].is_ident("withName") || head[0].is_ident("withLabel"))
        && head[1].is_punct(":");
    // Nextflow also takes a selector quoted whole: `'withName:BAR|BAZ' { ... }`.
    let is_quoted_selector = matches!(head, [quoted] if quoted
        .plain_string()
        .is_some_and(|s| s.starts_with("withName:") || s.starts_with("withLabel:")));
    if is_selector || is_quoted_selector {
        return Block::Selector(source_text(text, head));
    }
    if let [keyword, name] = head {
        if keyword.is_ident("process") {
            if let Some(name) = name.ident() {
                return Block::Process(name.to_string());
            }
        }
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
pub(super) fn statement_end(tokens: &[Token], start: usize) -> usize {
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

/// `withName: 'FOO'`, `withName:FOO` or `'withLabel:big'` (a selector as written) → the
/// processes it selects.
pub(super) fn process_selector(written: &str) -> Option<ProcessSelector> {
    let written = unquote(written.trim());
    let (kind, value) = written.split_once(':')?;
    let value = unquote(value.trim()).to_string();
    if value.is_empty() {
        return None;
    }
    match kind.trim() {
        "withName" => Some(ProcessSelector::WithName(value)),
        "withLabel" => Some(ProcessSelector::WithLabel(value)),
        _ => None,
    }
}

fn unquote(text: &str) -> &str {
    for quote in ['\'', '"'] {
        if let Some(inner) = text
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    text
}
