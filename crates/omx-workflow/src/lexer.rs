//! A tolerant tokenizer for Nextflow (Groovy) and WDL sources.
//!
//! It is not a grammar: it only has to get strings, comments and brackets right, so that a
//! quote inside a comment or a `}` inside a string cannot derail the scanners built on it.
//! Strings keep their interpolated parts as nested tokens, so `"${ a ? 'x' : 'y' }"` can be
//! read as the expression it holds. Anything it does not understand becomes a one-character
//! punctuation token; it never fails.

/// Which language's lexical rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// Nextflow scripts and configuration files: `//` and `/* */` comments, `'...'` literal
    /// strings, `"..."` strings with `${expr}` and `$name.path` interpolation, triple quotes.
    Groovy,
    /// WDL (draft-2 to development): `#` comments, both quote styles interpolate `~{}` and
    /// `${}`, and `command` sections hold shell text that is skipped as a whole.
    Wdl,
}

/// One token, with where it starts (1-based line) and its byte range in the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub line: usize,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind {
    Ident(String),
    /// A string literal: literal text and interpolated expressions, in order.
    Str(Vec<StrPart>),
    Number,
    Punct(String),
    Newline,
    /// A WDL `command` section (its shell text is not tokenized).
    Command,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StrPart {
    Text(String),
    Code(Vec<Token>),
}

impl Token {
    pub fn is_punct(&self, punct: &str) -> bool {
        matches!(&self.kind, TokenKind::Punct(p) if p == punct)
    }

    pub fn is_ident(&self, ident: &str) -> bool {
        matches!(&self.kind, TokenKind::Ident(i) if i == ident)
    }

    pub fn ident(&self) -> Option<&str> {
        match &self.kind {
            TokenKind::Ident(i) => Some(i),
            _ => None,
        }
    }

    pub fn is_newline(&self) -> bool {
        self.kind == TokenKind::Newline
    }

    /// The text of a string literal without interpolation, if this is one.
    pub fn plain_string(&self) -> Option<String> {
        let TokenKind::Str(parts) = &self.kind else {
            return None;
        };
        let mut text = String::new();
        for part in parts {
            match part {
                StrPart::Text(t) => text.push_str(t),
                StrPart::Code(_) => return None,
            }
        }
        Some(text)
    }
}

/// Operators read as one token; longest first.
const MULTI_CHAR_PUNCT: [&str; 12] = [
    "<<<", ">>>", "?:", "?.", "==", "!=", "&&", "||", "<=", ">=", "->", "..",
];

/// Tokenizes a whole source file.
pub(crate) fn tokenize(source: &str, dialect: Dialect) -> Vec<Token> {
    let mut lexer = Lexer {
        source,
        pos: 0,
        line: 1,
        dialect,
    };
    lexer.skip_shebang();
    lexer.tokens_until_close_brace(false)
}

struct Lexer<'a> {
    source: &'a str,
    pos: usize,
    line: usize,
    dialect: Dialect,
}

impl Lexer<'_> {
    fn rest(&self) -> &str {
        &self.source[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek_second(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    /// Consumes one character, counting lines.
    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_shebang(&mut self) {
        if self.dialect == Dialect::Groovy && self.rest().starts_with("#!") {
            self.skip_to_end_of_line();
        }
    }

    fn skip_to_end_of_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            self.bump();
        }
    }

    /// Tokens up to the end of input or, when `inside_braces`, up to the `}` that closes the
    /// `{` already consumed (which is consumed too).
    fn tokens_until_close_brace(&mut self, inside_braces: bool) -> Vec<Token> {
        let mut tokens = Vec::new();
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            let start = self.pos;
            let line = self.line;
            let kind = match c {
                ' ' | '\t' | '\r' | '\u{feff}' => {
                    self.bump();
                    continue;
                }
                '\n' => {
                    self.bump();
                    TokenKind::Newline
                }
                '\\' if self.peek_second() == Some('\n') => {
                    // A line continuation.
                    self.bump();
                    self.bump();
                    continue;
                }
                '#' if self.dialect == Dialect::Wdl => {
                    self.skip_to_end_of_line();
                    continue;
                }
                '/' if self.dialect == Dialect::Groovy && self.peek_second() == Some('/') => {
                    self.skip_to_end_of_line();
                    continue;
                }
                '/' if self.dialect == Dialect::Groovy && self.peek_second() == Some('*') => {
                    self.bump();
                    self.bump();
                    while !self.rest().is_empty() && !self.rest().starts_with("*/") {
                        self.bump();
                    }
                    self.bump();
                    self.bump();
                    continue;
                }
                '\'' | '"' => self.string(c),
                c if c.is_ascii_digit() => {
                    while self
                        .peek()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_')
                    {
                        self.bump();
                    }
                    TokenKind::Number
                }
                c if is_ident_start(c) => {
                    let ident = self.ident();
                    if self.dialect == Dialect::Wdl && ident == "command" && self.skip_command() {
                        TokenKind::Command
                    } else {
                        TokenKind::Ident(ident)
                    }
                }
                '}' if inside_braces && depth == 0 => {
                    self.bump();
                    return tokens;
                }
                _ => {
                    let punct = self.punct();
                    match punct.as_str() {
                        "{" => depth += 1,
                        "}" => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                    TokenKind::Punct(punct)
                }
            };
            tokens.push(Token {
                kind,
                line,
                start,
                end: self.pos,
            });
        }
        tokens
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
        self.source[start..self.pos].to_string()
    }

    fn punct(&mut self) -> String {
        for punct in MULTI_CHAR_PUNCT {
            if self.rest().starts_with(punct) {
                for _ in 0..punct.len() {
                    self.bump();
                }
                return punct.to_string();
            }
        }
        self.bump().map(String::from).unwrap_or_default()
    }

    /// After the word `command`: skips a `{ ... }` or `<<< ... >>>` section and says whether
    /// there was one. The brace form ends at the first `}` outside a placeholder, as WDL's
    /// grammar has it.
    fn skip_command(&mut self) -> bool {
        let after_word = (self.pos, self.line);
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        if self.rest().starts_with("<<<") {
            while !self.rest().is_empty() && !self.rest().starts_with(">>>") {
                self.bump();
            }
            for _ in 0..3 {
                self.bump();
            }
            return true;
        }
        if self.peek() == Some('{') {
            self.bump();
            while let Some(c) = self.peek() {
                if (c == '$' || c == '~') && self.peek_second() == Some('{') {
                    self.bump();
                    self.bump();
                    self.skip_balanced_braces();
                } else if c == '}' {
                    self.bump();
                    return true;
                } else {
                    self.bump();
                }
            }
            return true;
        }
        (self.pos, self.line) = after_word;
        false
    }

    /// Skips to the `}` closing a `{` already consumed.
    fn skip_balanced_braces(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.bump() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => return,
                '}' => depth -= 1,
                _ => {}
            }
        }
    }

    /// Reads a string literal starting at the quote `quote`.
    fn string(&mut self, quote: char) -> TokenKind {
        let triple: String = std::iter::repeat_n(quote, 3).collect();
        let is_triple = self.dialect == Dialect::Groovy && self.rest().starts_with(&triple);
        let interpolates = self.dialect == Dialect::Wdl || quote == '"';
        for _ in 0..if is_triple { 3 } else { 1 } {
            self.bump();
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if is_triple && self.rest().starts_with(&triple) {
                for _ in 0..3 {
                    self.bump();
                }
                break;
            }
            if !is_triple && c == quote {
                self.bump();
                break;
            }
            if !is_triple && c == '\n' {
                // Unterminated: end the string here so the rest of the file still lexes.
                break;
            }
            if c == '\\' {
                self.bump();
                match self.bump() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some('r') => text.push('\r'),
                    Some('\n') => {}
                    Some(other) => text.push(other),
                    None => {}
                }
                continue;
            }
            let opens_placeholder = (c == '$' || (c == '~' && self.dialect == Dialect::Wdl))
                && self.peek_second() == Some('{');
            if interpolates && opens_placeholder {
                self.bump();
                self.bump();
                if !text.is_empty() {
                    parts.push(StrPart::Text(std::mem::take(&mut text)));
                }
                parts.push(StrPart::Code(self.tokens_until_close_brace(true)));
                continue;
            }
            if interpolates
                && self.dialect == Dialect::Groovy
                && c == '$'
                && self.peek_second().is_some_and(is_ident_start)
            {
                self.bump();
                if !text.is_empty() {
                    parts.push(StrPart::Text(std::mem::take(&mut text)));
                }
                parts.push(StrPart::Code(self.property_path()));
                continue;
            }
            self.bump();
            text.push(c);
        }
        if !text.is_empty() {
            parts.push(StrPart::Text(text));
        }
        TokenKind::Str(parts)
    }

    /// `name.path.more` after a bare `$` in a Groovy string, as tokens.
    fn property_path(&mut self) -> Vec<Token> {
        let mut tokens = Vec::new();
        loop {
            let (start, line) = (self.pos, self.line);
            let ident = self.ident();
            tokens.push(Token {
                kind: TokenKind::Ident(ident),
                line,
                start,
                end: self.pos,
            });
            let continues =
                self.peek() == Some('.') && self.peek_second().is_some_and(is_ident_start);
            if !continues {
                return tokens;
            }
            let (start, line) = (self.pos, self.line);
            self.bump();
            tokens.push(Token {
                kind: TokenKind::Punct(".".into()),
                line,
                start,
                end: self.pos,
            });
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Index of the token closing the bracket opened at `open` (`(`, `[` or `{`), or the last
/// index when it is never closed.
pub(crate) fn matching_close(tokens: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (i, token) in tokens.iter().enumerate().skip(open) {
        if let TokenKind::Punct(p) = &token.kind {
            match p.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return i;
                    }
                }
                _ => {}
            }
        }
    }
    tokens.len().saturating_sub(1)
}

/// Splits `tokens` at every `separator` outside brackets.
pub(crate) fn split_top_level<'t>(tokens: &'t [Token], separator: &str) -> Vec<&'t [Token]> {
    let mut pieces = Vec::new();
    let mut depth = 0usize;
    let mut piece_start = 0;
    for (i, token) in tokens.iter().enumerate() {
        if let TokenKind::Punct(p) = &token.kind {
            match p.as_str() {
                "(" | "[" | "{" => depth += 1,
                ")" | "]" | "}" => depth = depth.saturating_sub(1),
                p if p == separator && depth == 0 => {
                    pieces.push(&tokens[piece_start..i]);
                    piece_start = i + 1;
                }
                _ => {}
            }
        }
    }
    pieces.push(&tokens[piece_start..]);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str, dialect: Dialect) -> Vec<TokenKind> {
        tokenize(source, dialect)
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn groovy_comments_hide_quotes_and_braces() {
        let tokens = kinds("a // it's { not code\n/* \"} */ b", Dialect::Groovy);
        assert_eq!(
            tokens,
            vec![
                TokenKind::Ident("a".into()),
                TokenKind::Newline,
                TokenKind::Ident("b".into())
            ]
        );
    }

    #[test]
    fn groovy_interpolation_nests_strings() {
        let tokens = tokenize(r#"x "${ a ? 'p}q' : "r" }-$b.c""#, Dialect::Groovy);
        let TokenKind::Str(parts) = &tokens[1].kind else {
            panic!("not a string: {tokens:?}");
        };
        let StrPart::Code(code) = &parts[0] else {
            panic!("no code part: {parts:?}");
        };
        assert_eq!(code[2].plain_string().as_deref(), Some("p}q"));
        assert_eq!(code[4].plain_string().as_deref(), Some("r"));
        assert_eq!(parts[1], StrPart::Text("-".into()));
        let StrPart::Code(path) = &parts[2] else {
            panic!("no property path: {parts:?}");
        };
        assert_eq!(path.len(), 3);
    }

    #[test]
    fn groovy_single_quotes_do_not_interpolate_and_escapes_apply() {
        let tokens = tokenize(r"'a${b}\'c'", Dialect::Groovy);
        assert_eq!(tokens[0].plain_string().as_deref(), Some("a${b}'c"));
    }

    #[test]
    fn triple_quoted_strings_span_lines() {
        let tokens = tokenize("'''a\n'b'\n''' x", Dialect::Groovy);
        assert_eq!(tokens[0].plain_string().as_deref(), Some("a\n'b'\n"));
        assert_eq!(tokens[1].line, 3);
    }

    #[test]
    fn wdl_command_sections_are_skipped_whole() {
        let source = "command <<<\n echo \"it's\" }\n>>>\nruntime {\n docker: \"~{d}\" # c\n}";
        let tokens = tokenize(source, Dialect::Wdl);
        assert_eq!(tokens[0].kind, TokenKind::Command);
        let docker = tokens.iter().find(|t| t.is_ident("docker")).unwrap();
        assert_eq!(docker.line, 5);
        let brace_form = tokenize("command { echo ${x} 'a }\nb", Dialect::Wdl);
        assert_eq!(brace_form[0].kind, TokenKind::Command);
        assert!(brace_form[2].is_ident("b"));
    }

    #[test]
    fn wdl_command_as_a_name_is_an_identifier() {
        let tokens = kinds("String command = \"x\"", Dialect::Wdl);
        assert_eq!(tokens[1], TokenKind::Ident("command".into()));
    }

    #[test]
    fn unterminated_string_stops_at_line_end() {
        let tokens = tokenize("'abc\nnext", Dialect::Groovy);
        assert_eq!(tokens[0].plain_string().as_deref(), Some("abc"));
        assert!(tokens[2].is_ident("next"));
    }
}
