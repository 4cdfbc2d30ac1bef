//! `WWW-Authenticate` parsing (RFC 7235), as a pure function.
//!
//! Registries answer `401` with challenges such as
//! `Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"`.
//! Real servers put commas inside quoted scopes (`pull,push`), escape quotes, send several
//! challenges in one header (`Basic realm="x", Bearer realm="y"`) or several headers, and vary the
//! case of scheme and parameter names, so a split on `,` is not enough.

/// One authentication challenge: a scheme and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme as sent (`Bearer`, `Basic`); compare with [`Challenge::is`].
    pub scheme: String,
    /// Parameters in order, names lower-cased, values unquoted and unescaped.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// True when the scheme is `scheme`, ignoring ASCII case.
    pub fn is(&self, scheme: &str) -> bool {
        self.scheme.eq_ignore_ascii_case(scheme)
    }

    /// The value of parameter `name` (case-insensitive), first occurrence.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Parses every challenge in one or more `WWW-Authenticate` header values.
///
/// Malformed fragments are skipped rather than failing the whole header: a registry's odd
/// formatting must not stop us from finding the `Bearer` challenge next to it.
pub fn parse_challenges<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut challenges = Vec::new();
    for header in headers {
        parse_into(header, &mut challenges);
    }
    challenges
}

fn parse_into(input: &str, out: &mut Vec<Challenge>) {
    let mut cursor = Cursor { rest: input };
    loop {
        cursor.skip_whitespace_and_commas();
        if cursor.rest.is_empty() {
            return;
        }
        let scheme = cursor.token();
        if scheme.is_empty() {
            cursor.bump();
            continue;
        }
        let mut challenge = Challenge {
            scheme: scheme.to_string(),
            params: Vec::new(),
        };
        loop {
            cursor.skip_whitespace();
            match cursor.peek() {
                None => break,
                Some(',') => {
                    cursor.skip_whitespace_and_commas();
                    if !cursor.at_param() {
                        break;
                    }
                }
                Some(_) => {
                    let name = cursor.token();
                    if name.is_empty() {
                        cursor.bump();
                        continue;
                    }
                    cursor.skip_whitespace();
                    if cursor.peek() == Some('=') {
                        cursor.bump();
                        cursor.skip_whitespace();
                        let value = if cursor.peek() == Some('"') {
                            cursor.quoted_string()
                        } else {
                            cursor.bare_value().to_string()
                        };
                        challenge.params.push((name.to_ascii_lowercase(), value));
                    }
                }
            }
        }
        out.push(challenge);
    }
}

struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.rest = &self.rest[c.len_utf8()..];
        }
    }

    fn skip_whitespace(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t']);
    }

    fn skip_whitespace_and_commas(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', ',']);
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> &'a str {
        let end = self
            .rest
            .char_indices()
            .find(|&(_, c)| !keep(c))
            .map_or(self.rest.len(), |(i, _)| i);
        let (taken, rest) = self.rest.split_at(end);
        self.rest = rest;
        taken
    }

    /// An RFC 7230 `token`.
    fn token(&mut self) -> &'a str {
        self.take_while(is_tchar)
    }

    /// An unquoted parameter value. Servers send URLs unquoted (`realm=https://x/token`), which
    /// are not strict tokens, so this reads up to the next separator instead.
    fn bare_value(&mut self) -> &'a str {
        self.take_while(|c| c != ',' && c != ' ' && c != '\t')
    }

    /// A `quoted-string` starting at `"`; an unterminated one runs to the end of input.
    fn quoted_string(&mut self) -> String {
        self.bump();
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return value;
                }
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                }
                c => value.push(c),
            }
        }
        self.rest = "";
        value
    }

    /// After a comma: does a parameter (`name=`) follow, rather than a new challenge's scheme?
    fn at_param(&self) -> bool {
        let mut lookahead = Cursor { rest: self.rest };
        if lookahead.token().is_empty() {
            return false;
        }
        lookahead.skip_whitespace();
        lookahead.peek() == Some('=')
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(header: &str) -> Challenge {
        let mut all = parse_challenges([header]);
        assert_eq!(all.len(), 1, "{all:?}");
        all.remove(0)
    }

    #[test]
    fn docker_hub_bearer_challenge() {
        let c = one(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull""#,
        );
        assert!(c.is("bearer"));
        assert_eq!(c.param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.param("service"), Some("registry.docker.io"));
        assert_eq!(c.param("scope"), Some("repository:library/ubuntu:pull"));
    }

    #[test]
    fn commas_inside_quotes_stay_in_the_value() {
        let c =
            one(r#"Bearer realm="https://r/token", scope="repository:a/b:pull,push", service="r""#);
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c.param("service"), Some("r"));
    }

    #[test]
    fn escaped_quotes_and_backslashes() {
        let c = one(r#"Basic realm="say \"hi\" \\ bye""#);
        assert_eq!(c.param("realm"), Some(r#"say "hi" \ bye"#));
    }

    #[test]
    fn several_challenges_in_one_header() {
        let all = parse_challenges([
            r#"Basic realm="basic-realm", Bearer realm="https://t/token",service="svc",scope="x:y:pull""#,
        ]);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].is("Basic"));
        assert_eq!(all[0].param("realm"), Some("basic-realm"));
        assert!(all[1].is("Bearer"));
        assert_eq!(all[1].param("service"), Some("svc"));
        assert_eq!(all[1].param("scope"), Some("x:y:pull"));
    }

    #[test]
    fn several_headers_and_bare_schemes() {
        let all = parse_challenges([
            "Negotiate",
            r#"bearer REALM=https://t/token , Service = svc"#,
        ]);
        assert_eq!(all.len(), 2, "{all:?}");
        assert!(all[0].is("negotiate"));
        assert!(all[0].params.is_empty());
        assert!(all[1].is("Bearer"));
        assert_eq!(all[1].param("realm"), Some("https://t/token"));
        assert_eq!(all[1].param("service"), Some("svc"));
    }

    #[test]
    fn malformed_input_does_not_panic_or_lose_good_parts() {
        assert!(parse_challenges([""]).is_empty());
        assert!(parse_challenges([" , ,"]).is_empty());
        let c = one(r#"Bearer realm="unterminated"#);
        assert_eq!(c.param("realm"), Some("unterminated"));
        let c = one(r#"Bearer =junk, realm="r""#);
        assert_eq!(c.param("realm"), Some("r"));
        for weird in [
            "\"",
            "=",
            "Bearer ,,,",
            "Bearer realm=",
            "Bearer \u{e9}=x",
            "a=b=c",
        ] {
            let _ = parse_challenges([weird]);
        }
    }

    #[test]
    fn empty_quoted_values_are_kept() {
        let c = one(r#"Bearer realm="",service="""#);
        assert_eq!(c.param("realm"), Some(""));
        assert_eq!(c.param("service"), Some(""));
    }
}
