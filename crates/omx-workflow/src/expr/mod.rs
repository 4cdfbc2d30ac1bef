//! The small part of Groovy and WDL expressions that decides a container image: string
//! literals, interpolation, `+`, variables, conditionals and fallbacks. Everything else is
//! kept as opaque text so it can be quoted in a warning.

mod eval;

pub(crate) use eval::evaluate;

use crate::lexer::{matching_close, split_top_level, Dialect, StrPart, Token, TokenKind};
use crate::Location;

/// How many strings one expression may stand for before the scanner gives up on it.
const MAX_CANDIDATES: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    /// A string with no interpolation.
    Literal { text: String, line: usize },
    /// Pieces joined into one string: an interpolated string or a `+` chain.
    Join {
        pieces: Vec<Expr>,
        line: usize,
        source: String,
    },
    /// A variable or property path (`docker`, `params.image`).
    Var { name: String, source: String },
    /// Any of these, depending on a condition (`c ? a : b`, `if c then a else b`).
    AnyOf(Vec<Expr>),
    /// The first of these that has a value (`a ?: b`, `select_first([a, b])`).
    FirstDefined(Vec<Expr>),
    /// An array literal; each element is a separate image (WDL `container: [...]`).
    Array(Vec<Expr>),
    /// A WDL object or struct literal, `object { docker: "x" }` or `RuntimeAttr { docker: "x" }`.
    Object(Vec<(String, Expr)>),
    /// Anything else; only known when the workflow runs.
    Opaque { source: String },
}

/// What an expression can evaluate to.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// An optional with no value.
    Undefined,
    /// The strings it may be, each known or not.
    Candidates(Vec<Candidate>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Candidate {
    /// A string and where it is written.
    Known { text: String, location: Location },
    /// Something only the run will tell, and why.
    Unknown { reason: String },
    /// A WDL object or struct: its members' values (a member it does not set is undefined).
    Record(Vec<(String, Value)>),
}

impl Value {
    pub fn unknown(reason: impl Into<String>) -> Value {
        Value::Candidates(vec![Candidate::Unknown {
            reason: reason.into(),
        }])
    }

    pub fn known(text: impl Into<String>, location: Location) -> Value {
        Value::Candidates(vec![Candidate::Known {
            text: text.into(),
            location,
        }])
    }
}

/// Where variables get their values.
pub(crate) trait Scope {
    fn lookup(&self, name: &str) -> Value;
}

/// Reads the expression in `tokens` (newlines are ignored) from the file whose text is `source`.
pub(crate) fn parse(tokens: &[Token], source: &str, dialect: Dialect) -> Expr {
    let tokens: Vec<Token> = tokens.iter().filter(|t| !t.is_newline()).cloned().collect();
    Parser { source, dialect }.expr(&tokens)
}

struct Parser<'a> {
    source: &'a str,
    dialect: Dialect,
}

impl Parser<'_> {
    fn expr(&self, tokens: &[Token]) -> Expr {
        if tokens.is_empty() {
            return Expr::Opaque {
                source: String::new(),
            };
        }
        if let Some(branches) = self.conditional(tokens) {
            return Expr::AnyOf(branches.iter().map(|b| self.expr(b)).collect());
        }
        if self.dialect == Dialect::Groovy {
            let sides = split_top_level(tokens, "?:");
            if sides.len() > 1 {
                return Expr::FirstDefined(sides.iter().map(|s| self.expr(s)).collect());
            }
        }
        let terms = split_top_level(tokens, "+");
        if terms.len() > 1 {
            return Expr::Join {
                pieces: terms.iter().map(|t| self.expr(t)).collect(),
                line: tokens[0].line,
                source: self.text_of(tokens),
            };
        }
        self.primary(tokens)
    }

    /// The two branches of `c ? a : b` (Groovy) or `if c then a else b` (WDL).
    fn conditional<'t>(&self, tokens: &'t [Token]) -> Option<[&'t [Token]; 2]> {
        let (opens, middle, closes) = match self.dialect {
            Dialect::Groovy => ("?", ":", ""),
            Dialect::Wdl => ("if", "then", "else"),
        };
        let is = |t: &Token, word: &str| t.is_punct(word) || t.is_ident(word);
        if self.dialect == Dialect::Wdl {
            if !tokens[0].is_ident(opens) {
                return None;
            }
            let then_at = top_level_position(tokens, 1, |t| is(t, middle), |t| is(t, opens))?;
            let else_at =
                top_level_position(tokens, then_at + 1, |t| is(t, closes), |t| is(t, opens))?;
            return Some([&tokens[then_at + 1..else_at], &tokens[else_at + 1..]]);
        }
        let question = top_level_position(tokens, 0, |t| is(t, opens), |_| false)?;
        let colon = top_level_position(tokens, question + 1, |t| is(t, middle), |t| is(t, opens))?;
        Some([&tokens[question + 1..colon], &tokens[colon + 1..]])
    }

    fn primary(&self, tokens: &[Token]) -> Expr {
        let source = self.text_of(tokens);
        let first = &tokens[0];
        let spans_all = |open: usize| matching_close(tokens, open) == tokens.len() - 1;
        if tokens.len() == 1 {
            match &first.kind {
                TokenKind::Str(parts) => return self.string(parts, first, source),
                TokenKind::Ident(name) => {
                    return Expr::Var {
                        name: name.clone(),
                        source,
                    }
                }
                _ => {}
            }
        }
        let wrapped = tokens.len() >= 2 && spans_all(0);
        if wrapped && (first.is_punct("(") || first.is_punct("{")) {
            // Parentheses, or a Groovy closure that computes the value.
            return self.expr(&tokens[1..tokens.len() - 1]);
        }
        if wrapped && first.is_punct("[") {
            return Expr::Array(self.elements(&tokens[1..tokens.len() - 1]));
        }
        let is_object_literal = self.dialect == Dialect::Wdl
            && first.ident().is_some_and(|name| {
                name == "object" || name.chars().next().is_some_and(char::is_uppercase)
            })
            && tokens.len() >= 3
            && tokens[1].is_punct("{")
            && matching_close(tokens, 1) == tokens.len() - 1;
        if is_object_literal {
            return Expr::Object(self.members(&tokens[2..tokens.len() - 1]));
        }
        let is_select_first = self.dialect == Dialect::Wdl
            && first.is_ident("select_first")
            && tokens.len() >= 4
            && tokens[1].is_punct("(")
            && tokens[2].is_punct("[")
            && matching_close(tokens, 1) == tokens.len() - 1;
        if is_select_first {
            let close = matching_close(tokens, 2);
            return Expr::FirstDefined(self.elements(&tokens[3..close]));
        }
        if is_property_path(tokens) {
            return Expr::Var {
                name: source.clone(),
                source,
            };
        }
        if self.dialect == Dialect::Groovy {
            if let Some(branches) = trailing_if_chain(tokens) {
                return Expr::AnyOf(branches.iter().map(|b| self.expr(b)).collect());
            }
        }
        Expr::Opaque { source }
    }

    /// The `name: value` members of an object literal; others are left out (they cannot be
    /// read as a member, so an access to them finds no value).
    fn members(&self, tokens: &[Token]) -> Vec<(String, Expr)> {
        split_top_level(tokens, ",")
            .into_iter()
            .filter_map(|member| match member {
                [name, colon, value @ ..] if colon.is_punct(":") && !value.is_empty() => {
                    Some((name.ident()?.to_string(), self.expr(value)))
                }
                _ => None,
            })
            .collect()
    }

    fn elements(&self, tokens: &[Token]) -> Vec<Expr> {
        split_top_level(tokens, ",")
            .into_iter()
            .filter(|element| !element.is_empty())
            .map(|element| self.expr(element))
            .collect()
    }

    fn string(&self, parts: &[StrPart], token: &Token, source: String) -> Expr {
        match parts {
            [] => Expr::Literal {
                text: String::new(),
                line: token.line,
            },
            [StrPart::Code(code)] => self.placeholder(code),
            _ => {
                let pieces: Vec<Expr> = parts
                    .iter()
                    .map(|part| match part {
                        StrPart::Text(text) => Expr::Literal {
                            text: text.clone(),
                            line: token.line,
                        },
                        StrPart::Code(code) => self.placeholder(code),
                    })
                    .collect();
                let literal_texts: Option<String> = pieces
                    .iter()
                    .map(|p| match p {
                        Expr::Literal { text, .. } => Some(text.as_str()),
                        _ => None,
                    })
                    .collect();
                if let Some(text) = literal_texts {
                    return Expr::Literal {
                        text,
                        line: token.line,
                    };
                }
                Expr::Join {
                    pieces,
                    line: token.line,
                    source,
                }
            }
        }
    }

    /// The expression in `${...}`. A WDL placeholder may start with options such as
    /// `default="x"`, which gives a fallback; others (`sep=`, `true=`) are kept opaque.
    fn placeholder(&self, code: &[Token]) -> Expr {
        let code: Vec<Token> = code.iter().filter(|t| !t.is_newline()).cloned().collect();
        let is_option = code.len() > 3
            && code[0].ident().is_some()
            && code[1].is_punct("=")
            && matches!(code[2].kind, TokenKind::Str(_));
        if self.dialect == Dialect::Wdl && is_option {
            let value = self.expr(&code[3..]);
            if code[0].is_ident("default") {
                let fallback = self.primary(&code[2..3]);
                return Expr::FirstDefined(vec![value, fallback]);
            }
            return Expr::Opaque {
                source: self.text_of(&code),
            };
        }
        self.expr(&code)
    }

    fn text_of(&self, tokens: &[Token]) -> String {
        source_text(self.source, tokens)
    }
}

/// The source text `tokens` cover, with runs of white space made one space.
pub(crate) fn source_text(source: &str, tokens: &[Token]) -> String {
    let (Some(first), Some(last)) = (tokens.first(), tokens.last()) else {
        return String::new();
    };
    let text = source.get(first.start..last.end).unwrap_or_default();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Position of the first token from `from` matching `wanted` outside brackets and outside
/// nested constructs opened by `nests` (each of which consumes one `wanted`).
fn top_level_position(
    tokens: &[Token],
    from: usize,
    wanted: impl Fn(&Token) -> bool,
    nests: impl Fn(&Token) -> bool,
) -> Option<usize> {
    let mut depth = 0usize;
    let mut nested = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(from) {
        if let TokenKind::Punct(p) = &token.kind {
            match p.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        if depth != 0 {
            continue;
        }
        if nests(token) {
            nested += 1;
        } else if wanted(token) {
            if nested == 0 {
                return Some(i);
            }
            nested -= 1;
        }
    }
    None
}

/// The branch bodies of an `if (c) { a } else if (d) { b } else { c }` that ends the closure
/// body `tokens` (rnaseq's `container = { def s = ...; if (params.arm) { ... } else { ... } }`):
/// a closure's value is its last statement's, so any branch may be the image. Statements
/// before it (`def` locals for the conditions) do not change which strings are possible.
fn trailing_if_chain(tokens: &[Token]) -> Option<Vec<&[Token]>> {
    let mut depth = 0usize;
    let mut heads = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if let TokenKind::Punct(p) = &token.kind {
            match p.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        let starts_chain = depth == 0
            && token.is_ident("if")
            && tokens.get(i + 1).is_some_and(|t| t.is_punct("("))
            && !(i > 0 && tokens[i - 1].is_ident("else"));
        if starts_chain {
            heads.push(i);
        }
    }
    let head = *heads.last()?;
    let mut branches = Vec::new();
    let mut i = head;
    loop {
        // `if (condition) { body }`
        let condition_close = matching_close(tokens, i + 1);
        let open = condition_close + 1;
        if !tokens.get(open)?.is_punct("{") {
            return None;
        }
        let close = matching_close(tokens, open);
        branches.push(&tokens[open + 1..close]);
        i = close + 1;
        if i == tokens.len() {
            return Some(branches);
        }
        if !tokens[i].is_ident("else") {
            return None;
        }
        match tokens.get(i + 1) {
            Some(t) if t.is_ident("if") && tokens.get(i + 2).is_some_and(|t| t.is_punct("(")) => {
                i += 1;
            }
            Some(t) if t.is_punct("{") => {
                let close = matching_close(tokens, i + 1);
                branches.push(&tokens[i + 2..close]);
                return (close + 1 == tokens.len()).then_some(branches);
            }
            _ => return None,
        }
    }
}

/// `a`, `a.b.c`: names joined by dots.
fn is_property_path(tokens: &[Token]) -> bool {
    tokens.len() % 2 == 1
        && tokens.iter().enumerate().all(|(i, t)| {
            if i % 2 == 0 {
                t.ident().is_some()
            } else {
                t.is_punct(".") || t.is_punct("?.")
            }
        })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::lexer::tokenize;

    struct NoVariables;

    impl Scope for NoVariables {
        fn lookup(&self, name: &str) -> Value {
            Value::unknown(format!("`{name}` is unknown"))
        }
    }

    fn texts(source: &str, dialect: Dialect) -> Vec<Result<String, String>> {
        let tokens = tokenize(source, dialect);
        let expr = parse(&tokens, source, dialect);
        match evaluate(&expr, Path::new("f"), &NoVariables) {
            Value::Undefined => Vec::new(),
            Value::Candidates(candidates) => candidates
                .into_iter()
                .map(|c| match c {
                    Candidate::Known { text, .. } => Ok(text),
                    Candidate::Unknown { reason } => Err(reason),
                    Candidate::Record(_) => Err("a struct".into()),
                })
                .collect(),
        }
    }

    #[test]
    fn groovy_ternary_gives_both_branches() {
        let found = texts(
            "\"${ workflow.containerEngine == 'singularity' && !task.ext.x ?\n 'https://a/b:1' :\n 'b:1' }\"",
            Dialect::Groovy,
        );
        assert_eq!(found, vec![Ok("https://a/b:1".into()), Ok("b:1".into())]);
    }

    #[test]
    fn groovy_elvis_keeps_the_literal_and_reports_the_unknown() {
        let found = texts("task.ext.container ?: 'x:1'", Dialect::Groovy);
        assert_eq!(
            found,
            vec![
                Err("`task.ext.container` is unknown".into()),
                Ok("x:1".into())
            ]
        );
    }

    #[test]
    fn concatenation_and_interpolation_join_literals() {
        assert_eq!(
            texts("'quay.io/' + \"${'x'}:1\"", Dialect::Groovy),
            vec![Ok("quay.io/x:1".into())]
        );
        assert_eq!(
            texts("\"quay.io/${params.ns}/x\"", Dialect::Groovy),
            vec![Err("`params.ns` is unknown".into())]
        );
    }

    #[test]
    fn wdl_if_then_else_and_select_first() {
        assert_eq!(
            texts("if flag then \"a\" else (\"b\")", Dialect::Wdl),
            vec![Ok("a".into()), Ok("b".into())]
        );
        assert_eq!(
            texts("select_first([\"a\", \"b\"])", Dialect::Wdl),
            vec![Ok("a".into())]
        );
        assert_eq!(
            texts("\"~{default='x' d}\"", Dialect::Wdl),
            vec![Err("`d` is unknown".into()), Ok("x".into())]
        );
    }

    #[test]
    fn a_closure_ending_in_if_else_gives_every_branch() {
        let found = texts(
            "{ def s = workflow.containerEngine == 'singularity'\n if (params.arm ?: false) {\n s ? 'https://a/x:1' : 'x:arm' } else if (params.b) { 'x:b' } else {\n s ? 'https://a/x:2' : 'x:2' } }",
            Dialect::Groovy,
        );
        assert_eq!(
            found,
            vec![
                Ok("https://a/x:1".into()),
                Ok("x:arm".into()),
                Ok("x:b".into()),
                Ok("https://a/x:2".into()),
                Ok("x:2".into())
            ]
        );
        // An `if` without `else` may give no value: not a chain that ends the closure.
        assert_eq!(texts("{ if (a) { 'x:1' } ; y }", Dialect::Groovy).len(), 1);
    }

    #[test]
    fn calls_are_opaque_with_their_source() {
        assert_eq!(
            texts("sub(x, \"a\",   \"b\")", Dialect::Wdl),
            vec![Err(
                "`sub(x, \"a\", \"b\")` is only known when the workflow runs".into()
            )]
        );
    }
}
