//! WDL (draft-2, 1.0, 1.1, development): `docker` and `container` in `runtime` and
//! `requirements` sections, evaluated the way a run would: a call's input bindings first,
//! then the inputs file (`wf.call.name`, `wf.name`), then the declaration's default.
//!
//! Tasks are evaluated once per call that reaches them from a workflow nobody calls (the
//! workflow a user runs), so `String docker = "..."` defaults in the workflow flow into the
//! tasks. Tasks and workflows no workflow calls are evaluated on their own.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::expr::{self, evaluate, source_text, Candidate, Expr, Scope, Value};
use crate::image::ContainerSite;
use crate::lexer::{matching_close, split_top_level, tokenize, Dialect, Token, TokenKind};
use crate::{resolve_relative, Location, ScanReport, SourceFile, Warning, WarningKind};

/// The runtime attributes that name a task's image.
const CONTAINER_ATTRIBUTES: [&str; 2] = ["docker", "container"];

/// The sections holding runtime attributes: `runtime` (all versions), `requirements` (1.2+).
const RUNTIME_SECTIONS: [&str; 2] = ["runtime", "requirements"];

/// WDL's primitive and compound types; other declaration types are struct names.
const TYPE_NAMES: [&str; 11] = [
    "String",
    "File",
    "Directory",
    "Int",
    "Float",
    "Boolean",
    "Array",
    "Map",
    "Pair",
    "Object",
    "None",
];

/// How deep sub-workflow calls are followed (WDL forbids cycles; this guards against them).
const MAX_CALL_DEPTH: usize = 32;

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

    fn value(&self, key: &str) -> Option<Value> {
        let (json, line) = self.values.get(key)?;
        let location = Location {
            file: self.file.clone(),
            line: *line,
        };
        let not_a_string = || {
            Value::unknown(format!(
                "`{key}` in {} is not a string or an array of strings",
                self.file.display()
            ))
        };
        Some(match json {
            serde_json::Value::Null => Value::Undefined,
            serde_json::Value::String(text) => Value::known(text.clone(), location),
            serde_json::Value::Array(items) => {
                let mut candidates = Vec::new();
                for item in items {
                    let Some(text) = item.as_str() else {
                        return Some(not_a_string());
                    };
                    candidates.push(Candidate::Known {
                        text: text.to_string(),
                        location: location.clone(),
                    });
                }
                Value::Candidates(candidates)
            }
            _ => not_a_string(),
        })
    }
}

/// The line where `"key"` is first written in `text` (0 when it is written with escapes).
fn line_of_key(text: &str, key: &str) -> usize {
    let quoted = serde_json::to_string(key).unwrap_or_default();
    text.find(&quoted)
        .map(|at| text[..at].matches('\n').count() + 1)
        .unwrap_or(0)
}

/// The import paths of a WDL document, as written.
pub(crate) fn imported_paths(text: &str) -> Vec<String> {
    let tokens = tokenize(text, Dialect::Wdl);
    parse_imports(&tokens).into_iter().map(|i| i.uri).collect()
}

struct Document<'a> {
    path: &'a Path,
    imports: Vec<Import>,
    tasks: Vec<Task>,
    workflows: Vec<Workflow>,
}

struct Import {
    uri: String,
    namespace: String,
    line: usize,
}

struct Declaration {
    name: String,
    /// Whether a call binding or the inputs file may set it.
    is_input: bool,
    optional: bool,
    default: Option<Expr>,
}

struct Task {
    name: String,
    declarations: Vec<Declaration>,
    containers: Vec<ContainerAttribute>,
}

struct ContainerAttribute {
    expr: Expr,
    source: String,
    line: usize,
}

struct Workflow {
    name: String,
    declarations: Vec<Declaration>,
    calls: Vec<Call>,
}

struct Call {
    /// `task`, or `namespace.task` for an imported one.
    target: Vec<String>,
    /// The alias, or the task or workflow name.
    name: String,
    bindings: Vec<(String, Expr)>,
    line: usize,
}

/// Scans WDL documents together, following calls across imports.
pub(crate) fn scan(sources: &[&SourceFile], inputs: Option<&WdlInputs>) -> ScanReport {
    let documents: Vec<Document> = sources.iter().map(|s| parse_document(s)).collect();
    let project = Project {
        index: documents
            .iter()
            .enumerate()
            .map(|(i, d)| (d.path.to_path_buf(), i))
            .collect(),
        documents: &documents,
        inputs,
    };
    let mut report = ScanReport::default();
    project.warn_about_missing_imports(&mut report);
    let called = project.called_targets();
    for (d, document) in documents.iter().enumerate() {
        for workflow in &document.workflows {
            if !called.contains(&(d, workflow.name.clone())) {
                let scope =
                    project.scope(d, &workflow.declarations, &workflow.name, HashMap::new());
                project.evaluate_workflow(d, workflow, scope, 0, &mut report);
            }
        }
        for task in &document.tasks {
            if !called.contains(&(d, task.name.clone())) {
                let scope = project.scope(d, &task.declarations, &task.name, HashMap::new());
                project.evaluate_task(d, task, &scope, &mut report);
            }
        }
    }
    report
}

struct Project<'a> {
    documents: &'a [Document<'a>],
    index: HashMap<PathBuf, usize>,
    inputs: Option<&'a WdlInputs>,
}

enum Callee<'a> {
    Task(usize, &'a Task),
    Workflow(usize, &'a Workflow),
}

impl<'a> Project<'a> {
    fn import_target(&self, document: usize, import: &Import) -> Option<usize> {
        if import.uri.contains("://") {
            return None;
        }
        let path = resolve_relative(self.documents[document].path, &import.uri);
        self.index.get(&path).copied()
    }

    fn warn_about_missing_imports(&self, report: &mut ScanReport) {
        for (d, document) in self.documents.iter().enumerate() {
            for import in &document.imports {
                if self.import_target(d, import).is_none() {
                    report.warnings.push(Warning {
                        location: Location {
                            file: document.path.to_path_buf(),
                            line: import.line,
                        },
                        kind: WarningKind::Unreadable,
                        message: format!(
                            "the imported document `{}` was not found (remote imports are not \
                             fetched); the images of its tasks are not listed",
                            import.uri
                        ),
                    });
                }
            }
        }
    }

    /// Resolves a call's target; `None` when it lies in a document that is not available.
    fn callee(&self, document: usize, call: &Call) -> Option<Callee<'a>> {
        let (d, name) = match call.target.as_slice() {
            [name] => (document, name),
            [namespace, name] => {
                let import = self.documents[document]
                    .imports
                    .iter()
                    .find(|i| &i.namespace == namespace)?;
                (self.import_target(document, import)?, name)
            }
            _ => return None,
        };
        let target = &self.documents[d];
        if let Some(task) = target.tasks.iter().find(|t| &t.name == name) {
            return Some(Callee::Task(d, task));
        }
        let workflow = target.workflows.iter().find(|w| &w.name == name)?;
        Some(Callee::Workflow(d, workflow))
    }

    /// `(document, name)` of every task and workflow some workflow calls.
    fn called_targets(&self) -> HashSet<(usize, String)> {
        let mut called = HashSet::new();
        for (d, document) in self.documents.iter().enumerate() {
            for call in document.workflows.iter().flat_map(|w| &w.calls) {
                match self.callee(d, call) {
                    Some(Callee::Task(target, task)) => called.insert((target, task.name.clone())),
                    Some(Callee::Workflow(target, w)) => called.insert((target, w.name.clone())),
                    None => false,
                };
            }
        }
        called
    }

    fn scope(
        &'a self,
        document: usize,
        declarations: &'a [Declaration],
        input_prefix: &str,
        bindings: HashMap<String, Value>,
    ) -> DeclarationScope<'a> {
        DeclarationScope {
            project: self,
            document,
            declarations,
            input_prefix: input_prefix.to_string(),
            bindings,
            resolving: RefCell::new(Vec::new()),
        }
    }

    fn evaluate_workflow(
        &self,
        d: usize,
        workflow: &Workflow,
        scope: DeclarationScope,
        depth: usize,
        report: &mut ScanReport,
    ) {
        let document = &self.documents[d];
        for call in &workflow.calls {
            let Some(callee) = self.callee(d, call) else {
                if call.target.len() == 1 {
                    report.warnings.push(Warning {
                        location: Location {
                            file: document.path.to_path_buf(),
                            line: call.line,
                        },
                        kind: WarningKind::Unreadable,
                        message: format!(
                            "no task or workflow `{}` for this call; its images are not listed",
                            call.target.join(".")
                        ),
                    });
                }
                continue;
            };
            let bindings: HashMap<String, Value> = call
                .bindings
                .iter()
                .map(|(name, expr)| (name.clone(), evaluate(expr, document.path, &scope)))
                .collect();
            let prefix = format!("{}.{}", scope.input_prefix, call.name);
            match callee {
                Callee::Task(target, task) => {
                    let task_scope = self.scope(target, &task.declarations, &prefix, bindings);
                    self.evaluate_task(target, task, &task_scope, report);
                }
                Callee::Workflow(target, sub) if depth < MAX_CALL_DEPTH => {
                    let sub_scope = self.scope(target, &sub.declarations, &prefix, bindings);
                    self.evaluate_workflow(target, sub, sub_scope, depth + 1, report);
                }
                Callee::Workflow(..) => {}
            }
        }
    }

    fn evaluate_task(
        &self,
        d: usize,
        task: &Task,
        scope: &DeclarationScope,
        report: &mut ScanReport,
    ) {
        let path = self.documents[d].path;
        let context = format!(" in `{}`", scope.input_prefix);
        for container in &task.containers {
            let site = ContainerSite {
                location: Location {
                    file: path.to_path_buf(),
                    line: container.line,
                },
                expression: &container.source,
                context: &context,
                default_registry: None,
            };
            site.record(evaluate(&container.expr, path, scope), report);
        }
    }
}

/// The variables of one task or workflow, as one call (or a run of it alone) sees them.
struct DeclarationScope<'a> {
    project: &'a Project<'a>,
    document: usize,
    declarations: &'a [Declaration],
    /// `wf.call` for a call's task, `wf` or `task` for what runs alone: the inputs-file prefix.
    input_prefix: String,
    bindings: HashMap<String, Value>,
    /// Names being evaluated, to stop on declarations that refer to each other.
    resolving: RefCell<Vec<String>>,
}

impl Scope for DeclarationScope<'_> {
    fn lookup(&self, name: &str) -> Value {
        if let Some(value) = self.bindings.get(name) {
            if *value != Value::Undefined {
                return value.clone();
            }
        }
        let Some(declaration) = self.declarations.iter().find(|d| d.name == name) else {
            return Value::unknown(format!("`{name}` is only known when the workflow runs"));
        };
        let key = format!("{}.{name}", self.input_prefix);
        if declaration.is_input {
            if let Some(value) = self.project.inputs.and_then(|inputs| inputs.value(&key)) {
                return value;
            }
        }
        match &declaration.default {
            Some(_) if self.resolving.borrow().iter().any(|n| n == name) => {
                Value::unknown(format!("`{name}` refers to itself"))
            }
            Some(default) => {
                self.resolving.borrow_mut().push(name.to_string());
                let path = self.project.documents[self.document].path;
                let value = evaluate(default, path, self);
                self.resolving.borrow_mut().pop();
                value
            }
            None if declaration.optional => Value::Undefined,
            None => Value::unknown(format!(
                "`{name}` has no default; give `{key}` in the inputs file (--inputs)"
            )),
        }
    }
}

fn parse_document(source: &SourceFile) -> Document<'_> {
    let tokens = tokenize(&source.text, Dialect::Wdl);
    let text = source.text.as_str();
    let is_draft2 = !tokens
        .iter()
        .find(|t| !t.is_newline())
        .is_some_and(|t| t.is_ident("version"));
    let mut document = Document {
        path: &source.path,
        imports: parse_imports(&tokens),
        tasks: Vec::new(),
        workflows: Vec::new(),
    };
    let mut i = 0;
    while i < tokens.len() {
        let is_block = |keyword: &str| {
            tokens[i].is_ident(keyword)
                && tokens.get(i + 1).and_then(Token::ident).is_some()
                && tokens.get(i + 2).is_some_and(|t| t.is_punct("{"))
        };
        if is_block("task") || is_block("workflow") || is_block("struct") {
            let name = tokens[i + 1].ident().unwrap_or_default().to_string();
            let close = matching_close(&tokens, i + 2);
            let body = &tokens[i + 3..close];
            if tokens[i].is_ident("task") {
                document.tasks.push(parse_task(name, body, text, is_draft2));
            } else if tokens[i].is_ident("workflow") {
                document
                    .workflows
                    .push(parse_workflow(name, body, text, is_draft2));
            }
            i = close + 1;
        } else {
            i += 1;
        }
    }
    document
}

fn parse_imports(tokens: &[Token]) -> Vec<Import> {
    let mut imports = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if !token.is_ident("import") {
            continue;
        }
        let Some(uri) = tokens.get(i + 1).and_then(Token::plain_string) else {
            continue;
        };
        let alias = match (tokens.get(i + 2), tokens.get(i + 3)) {
            (Some(r#as), Some(name)) if r#as.is_ident("as") => name.ident().map(String::from),
            _ => None,
        };
        let namespace = alias.unwrap_or_else(|| {
            let file = uri.rsplit('/').next().unwrap_or(&uri);
            file.strip_suffix(".wdl").unwrap_or(file).to_string()
        });
        imports.push(Import {
            uri,
            namespace,
            line: token.line,
        });
    }
    imports
}

/// The name of a section opened at `i` (`runtime {`), if one is.
fn section_at(tokens: &[Token], i: usize) -> Option<&str> {
    let name = tokens[i].ident()?;
    tokens.get(i + 1)?.is_punct("{").then_some(name)
}

fn parse_task(name: String, body: &[Token], text: &str, is_draft2: bool) -> Task {
    let mut task = Task {
        name,
        declarations: Vec::new(),
        containers: Vec::new(),
    };
    let mut i = 0;
    while i < body.len() {
        if let Some(section) = section_at(body, i) {
            let close = matching_close(body, i + 1);
            let inside = &body[i + 2..close];
            if section == "input" {
                task.declarations
                    .extend(parse_declarations(inside, text, true));
            } else if RUNTIME_SECTIONS.contains(&section) {
                task.containers
                    .extend(parse_container_attributes(inside, text));
            }
            i = close + 1;
            continue;
        }
        let end = statement_end(body, i);
        if let Some(declaration) = parse_declaration(&body[i..end], text, is_draft2) {
            task.declarations.push(declaration);
        }
        i = end.max(i + 1);
    }
    task
}

fn parse_workflow(name: String, body: &[Token], text: &str, is_draft2: bool) -> Workflow {
    let mut workflow = Workflow {
        name,
        declarations: Vec::new(),
        calls: Vec::new(),
    };
    read_workflow_body(body, text, is_draft2, &mut workflow);
    workflow
}

/// Declarations and calls of a workflow body, descending into `scatter` and `if` blocks
/// (whose declarations are never inputs).
fn read_workflow_body(body: &[Token], text: &str, inputs_here: bool, workflow: &mut Workflow) {
    let mut i = 0;
    while i < body.len() {
        if let Some(section) = section_at(body, i) {
            let close = matching_close(body, i + 1);
            if section == "input" {
                let inside = &body[i + 2..close];
                workflow
                    .declarations
                    .extend(parse_declarations(inside, text, true));
            }
            i = close + 1;
            continue;
        }
        if body[i].is_ident("call") {
            let (call, end) = parse_call(body, i, text);
            workflow.calls.extend(call);
            i = end;
            continue;
        }
        let opens_block = (body[i].is_ident("scatter") || body[i].is_ident("if"))
            && body.get(i + 1).is_some_and(|t| t.is_punct("("));
        if opens_block {
            let condition_close = matching_close(body, i + 1);
            if body
                .get(condition_close + 1)
                .is_some_and(|t| t.is_punct("{"))
            {
                let close = matching_close(body, condition_close + 1);
                read_workflow_body(&body[condition_close + 2..close], text, false, workflow);
                i = close + 1;
                continue;
            }
        }
        let end = statement_end(body, i);
        if let Some(declaration) = parse_declaration(&body[i..end], text, inputs_here) {
            workflow.declarations.push(declaration);
        }
        i = end.max(i + 1);
    }
}

/// `call target [as alias] [after other]* [{ [input:] name = expr, ... }]` at `start`; returns
/// the call and the index after it.
fn parse_call(body: &[Token], start: usize, text: &str) -> (Option<Call>, usize) {
    let mut i = start + 1;
    let mut target = Vec::new();
    while let Some(name) = body.get(i).and_then(Token::ident) {
        target.push(name.to_string());
        if !body.get(i + 1).is_some_and(|t| t.is_punct(".")) {
            i += 1;
            break;
        }
        i += 2;
    }
    let mut alias = None;
    while i + 1 < body.len() && (body[i].is_ident("as") || body[i].is_ident("after")) {
        if body[i].is_ident("as") {
            alias = body[i + 1].ident().map(String::from);
        }
        i += 2;
    }
    let mut bindings = Vec::new();
    if body.get(i).is_some_and(|t| t.is_punct("{")) {
        let close = matching_close(body, i);
        let mut inside: Vec<Token> = body[i + 1..close]
            .iter()
            .filter(|t| !t.is_newline())
            .cloned()
            .collect();
        if inside.len() >= 2 && inside[0].is_ident("input") && inside[1].is_punct(":") {
            inside.drain(..2);
        }
        for binding in split_top_level(&inside, ",") {
            match binding {
                [name] => {
                    if let Some(n) = name.ident() {
                        bindings.push((n.to_string(), expr::parse(binding, text, Dialect::Wdl)));
                    }
                }
                [name, equals, value @ ..] if equals.is_punct("=") && !value.is_empty() => {
                    if let Some(n) = name.ident() {
                        bindings.push((n.to_string(), expr::parse(value, text, Dialect::Wdl)));
                    }
                }
                _ => {}
            }
        }
        i = close + 1;
    }
    let Some(last) = target.last().cloned() else {
        return (None, i.max(start + 1));
    };
    let call = Call {
        target,
        name: alias.unwrap_or(last),
        bindings,
        line: body[start].line,
    };
    (Some(call), i)
}

fn parse_declarations(tokens: &[Token], text: &str, is_input: bool) -> Vec<Declaration> {
    let mut declarations = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let end = statement_end(tokens, i);
        declarations.extend(parse_declaration(&tokens[i..end], text, is_input));
        i = end.max(i + 1);
    }
    declarations
}

/// `Type[...]?+ name [= expr]`, if the statement is a declaration.
fn parse_declaration(statement: &[Token], text: &str, is_input: bool) -> Option<Declaration> {
    let type_name = statement.first()?.ident()?;
    let is_type =
        TYPE_NAMES.contains(&type_name) || type_name.chars().next().is_some_and(char::is_uppercase);
    if !is_type {
        return None;
    }
    let mut i = 1;
    if statement.get(i).is_some_and(|t| t.is_punct("[")) {
        i = matching_close(statement, i) + 1;
    }
    let mut optional = false;
    while let Some(token) = statement.get(i) {
        if token.is_punct("?") {
            optional = true;
        } else if !token.is_punct("+") {
            break;
        }
        i += 1;
    }
    let name = statement.get(i)?.ident()?.to_string();
    let default = match statement.get(i + 1) {
        None => None,
        Some(equals) if equals.is_punct("=") && statement.len() > i + 2 => {
            Some(expr::parse(&statement[i + 2..], text, Dialect::Wdl))
        }
        Some(_) => return None,
    };
    Some(Declaration {
        name,
        is_input,
        optional,
        default,
    })
}

/// `docker: expr` and `container: expr` entries of a runtime or requirements section.
fn parse_container_attributes(tokens: &[Token], text: &str) -> Vec<ContainerAttribute> {
    let mut attributes = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let end = statement_end(tokens, i);
        if let [key, colon, value @ ..] = &tokens[i..end] {
            let names_image = key
                .ident()
                .is_some_and(|k| CONTAINER_ATTRIBUTES.contains(&k));
            if names_image && colon.is_punct(":") && !value.is_empty() {
                attributes.push(ContainerAttribute {
                    expr: expr::parse(value, text, Dialect::Wdl),
                    source: source_text(text, value),
                    line: key.line,
                });
            }
        }
        i = end.max(i + 1);
    }
    attributes
}

/// Where the WDL statement starting at `start` ends: a newline or `,` outside brackets, unless
/// the expression clearly goes on (after or before an operator, before `then`/`else`).
fn statement_end(tokens: &[Token], start: usize) -> usize {
    const CONTINUES_AFTER: [&str; 13] = [
        "+", "-", "*", "/", "%", "&&", "||", "==", "!=", "=", "<", ">", ".",
    ];
    const CONTINUES_BEFORE: [&str; 8] = ["+", "*", "/", "&&", "||", "==", "!=", "."];
    const CONTINUING_WORDS: [&str; 3] = ["if", "then", "else"];
    let mut depth = 0usize;
    let mut last: Option<&Token> = None;
    for (i, token) in tokens.iter().enumerate().skip(start) {
        if let TokenKind::Punct(p) = &token.kind {
            match p.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                "," if depth == 0 => return i,
                _ => {}
            }
        }
        if depth > 0 || !matches!(token.kind, TokenKind::Newline | TokenKind::Command) {
            if !token.is_newline() {
                last = Some(token);
            }
            continue;
        }
        let Some(previous) = last else {
            return i;
        };
        let next = tokens[i..].iter().find(|t| !t.is_newline());
        let continues = CONTINUES_AFTER.iter().any(|p| previous.is_punct(p))
            || CONTINUING_WORDS.iter().any(|w| previous.is_ident(w))
            || next.is_some_and(|t| {
                CONTINUES_BEFORE.iter().any(|p| t.is_punct(p))
                    || t.is_ident("then")
                    || t.is_ident("else")
            });
        if !continues {
            return i;
        }
    }
    tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wdl(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            text: text.into(),
            language: crate::Language::Wdl,
        }
    }

    fn found(report: &ScanReport) -> Vec<String> {
        report
            .findings
            .iter()
            .map(|f| format!("{} {}", f.image, f.location))
            .collect()
    }

    #[test]
    fn call_bindings_flow_from_workflow_defaults_into_tasks() {
        let source = wdl(
            "w.wdl",
            r#"version 1.0
workflow w {
  input {
    String image = "ubuntu:22.04"
  }
  call t { input: docker = image }
  call t as t2
  scatter (x in [1, 2]) {
    call t as t3 { input: docker = "alpine:3" }
  }
}
task t {
  input {
    String docker = "debian:12"
  }
  command <<< echo "}" >>>
  runtime {
    docker: docker
    memory: "1 GB"
  }
}
"#,
        );
        let mut report = scan(&[&source], None);
        report.sort_and_dedup();
        assert_eq!(
            found(&report),
            vec![
                "alpine:3 w.wdl:9",
                "debian:12 w.wdl:14",
                "ubuntu:22.04 w.wdl:4"
            ]
        );
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }

    #[test]
    fn inputs_file_overrides_defaults_but_not_bindings() {
        let source = wdl(
            "w.wdl",
            "version 1.0\nworkflow w {\n  input { String image = \"a:1\" }\n  call t { input: docker = image }\n  call t as u\n}\ntask t {\n  input { String docker = \"b:1\" }\n  runtime { docker: \"~{docker}\" }\n}\n",
        );
        let inputs = WdlInputs::parse(
            "in.json",
            "{\n  \"w.image\": \"c:1\",\n  \"w.t.docker\": \"ignored:1\",\n  \"w.u.docker\": \"d:1\"\n}",
        )
        .unwrap();
        let mut report = scan(&[&source], Some(&inputs));
        report.sort_and_dedup();
        assert_eq!(found(&report), vec!["c:1 in.json:2", "d:1 in.json:4"]);
    }

    #[test]
    fn required_input_without_default_is_a_warning_naming_the_key() {
        let source = wdl(
            "t.wdl",
            "version 1.1\ntask t {\n  input {\n    String docker\n    String? extra\n  }\n  runtime {\n    container: [docker, \"x:1\"]\n  }\n}\n",
        );
        let report = scan(&[&source], None);
        assert_eq!(found(&report), vec!["x:1 t.wdl:8"]);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].location.line, 8);
        assert_eq!(
            report.warnings[0].message,
            "cannot resolve the container image `[docker, \"x:1\"]` in `t`: `docker` has no \
             default; give `t.docker` in the inputs file (--inputs)"
        );
    }

    #[test]
    fn imports_resolve_relative_to_the_importing_file() {
        let main = wdl(
            "wf/main.wdl",
            "version 1.0\nimport \"../tasks/align.wdl\" as align\nimport \"https://x/y.wdl\"\nworkflow main {\n  String img = \"bwa:0.7\"\n  call align.bwa { input: image = img }\n}\n",
        );
        let tasks = wdl(
            "tasks/align.wdl",
            "version 1.0\ntask bwa {\n  input { String image }\n  runtime { docker: image }\n}\n",
        );
        assert_eq!(
            imported_paths(&main.text),
            vec!["../tasks/align.wdl", "https://x/y.wdl"]
        );
        let report = scan(&[&main, &tasks], None);
        assert_eq!(found(&report), vec!["bwa:0.7 wf/main.wdl:5"]);
        assert_eq!(report.warnings.len(), 1);
        assert_eq!(report.warnings[0].location.line, 3);
    }

    #[test]
    fn select_first_and_concatenation() {
        let source = wdl(
            "t.wdl",
            "version 1.0\ntask t {\n  input {\n    String? override\n    String version = \"4.5\"\n  }\n  String image = select_first([override, \"broad/gatk:\" + version])\n  runtime { docker: image }\n}\n",
        );
        let report = scan(&[&source], None);
        assert_eq!(found(&report), vec!["broad/gatk:4.5 t.wdl:7"]);
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn self_reference_does_not_loop() {
        let source = wdl(
            "t.wdl",
            "version 1.0\ntask t {\n  String a = b\n  String b = a\n  runtime { docker: a }\n}\n",
        );
        let report = scan(&[&source], None);
        assert!(report.findings.is_empty());
        assert!(report.warnings[0].message.contains("refers to itself"));
    }

    #[test]
    fn inputs_errors() {
        assert_eq!(WdlInputs::parse("x", "[]"), Err(InputsError::NotAnObject));
        assert!(matches!(
            WdlInputs::parse("x", "{"),
            Err(InputsError::Syntax { line: 1, .. })
        ));
    }
}
