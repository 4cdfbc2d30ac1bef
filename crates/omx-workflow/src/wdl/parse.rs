//! Reading WDL documents: imports, tasks (declarations and runtime attributes), workflows
//! (declarations and calls, inside `scatter` and `if` blocks too).

use crate::expr::{self, source_text, Expr};
use crate::lexer::{matching_close, split_top_level, tokenize, Dialect, Token, TokenKind};
use std::path::Path;

use crate::SourceFile;

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
/// The import paths of a WDL document, as written.
pub(crate) fn imported_paths(text: &str) -> Vec<String> {
    let tokens = tokenize(text, Dialect::Wdl);
    parse_imports(&tokens).into_iter().map(|i| i.uri).collect()
}

pub(super) struct Document<'a> {
    pub(super) path: &'a Path,
    pub(super) imports: Vec<Import>,
    pub(super) tasks: Vec<Task>,
    pub(super) workflows: Vec<Workflow>,
}

pub(super) struct Import {
    pub(super) uri: String,
    pub(super) namespace: String,
    pub(super) line: usize,
}

pub(super) struct Declaration {
    pub(super) name: String,
    /// Whether a call binding or the inputs file may set it.
    pub(super) is_input: bool,
    pub(super) optional: bool,
    pub(super) default: Option<Expr>,
}

pub(super) struct Task {
    pub(super) name: String,
    pub(super) declarations: Vec<Declaration>,
    pub(super) containers: Vec<ContainerAttribute>,
}

pub(super) struct ContainerAttribute {
    pub(super) expr: Expr,
    pub(super) source: String,
    pub(super) line: usize,
}

pub(super) struct Workflow {
    pub(super) name: String,
    pub(super) declarations: Vec<Declaration>,
    pub(super) calls: Vec<Call>,
}

pub(super) struct Call {
    /// `task`, or `namespace.task` for an imported one.
    pub(super) target: Vec<String>,
    /// The alias, or the task or workflow name.
    pub(super) name: String,
    pub(super) bindings: Vec<(String, Expr)>,
    pub(super) line: usize,
}

pub(super) fn parse_document(source: &SourceFile) -> Document<'_> {
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
            let inside = &body[i + 2..close];
            // Outputs are declarations too: a caller reads them as `call.name` (theiagen's
            // organism-parameters workflow hands its callers their docker images).
            if section == "input" || section == "output" {
                workflow
                    .declarations
                    .extend(parse_declarations(inside, text, section == "input"));
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
