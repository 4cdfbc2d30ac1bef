//! A string that must never be shown: passwords, tokens, base64 `auth` blobs; and [`redact`],
//! the one function every echo of user input or server text goes through, so that a credential
//! written where it does not belong (`user:password@host`, `?access_token=...`) is not repeated.

use std::borrow::Cow;
use std::fmt;

/// A credential value. `Debug` and `Display` print `***`, so a `Secret` can sit in any struct
/// that is logged or put in an error without leaking; only [`Secret::expose`] reveals it, and
/// that call is the single place to audit.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret value, for building an `Authorization` header or a helper's input.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// If `input` has a `user[:password]@` before its registry host, the input with that part
/// replaced by `***`.
///
/// A digest never contains `/`, so an `@` with a `/` after it can only end a userinfo. Without
/// a path, `user:password@host[:port]` is told from `name:tag@digest` by what follows the `@`:
/// a host, not `algorithm:hex`.
pub(crate) fn redact_userinfo(input: &str) -> Option<String> {
    let at = input.rfind('@')?;
    let (before, after) = (&input[..at], &input[at + 1..]);
    let has_userinfo = after.contains('/') || (before.contains(':') && !looks_like_digest(after));
    if !has_userinfo {
        return None;
    }
    // The scheme's `://` comes before the userinfo; one after the `@` belongs to the rest.
    let userinfo_start = before.find("://").map_or(0, |i| i + 3);
    Some(format!("{}***{}", &input[..userinfo_start], &input[at..]))
}

/// `algorithm:hex` in shape (not necessarily valid), as opposed to `host[:port]`.
fn looks_like_digest(s: &str) -> bool {
    let Some((algorithm, hex)) = s.split_once(':') else {
        return false;
    };
    let algorithm_shaped = algorithm.starts_with(|c: char| c.is_ascii_alphabetic())
        && algorithm
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_'));
    let port_shaped = hex.len() <= 5 && hex.bytes().all(|b| b.is_ascii_digit());
    algorithm_shaped && !hex.is_empty() && !port_shaped
}

/// `text` with every credential-shaped part replaced by `***`: a userinfo before a host
/// (`user:password@host`, `https://user@host/...`), everything after a `?` (query strings carry
/// tokens and presigned signatures; a URL without them still names its host and path), and the
/// value of any `key=value` whose key names a secret (`token=`, `password=`, `X-Amz-Signature=`).
///
/// Works word by word (words are separated by whitespace), so it serves a single value (an
/// argument, a reference) and a whole message alike. Over-redaction is the accepted error: a tag
/// such as `1?x` is shown as `1?***`.
pub fn redact(text: &str) -> Cow<'_, str> {
    if !text.contains(['@', '?', '=']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let word_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        out.push_str(&redact_word(&rest[..word_end]));
        let space_end = rest[word_end..]
            .find(|c: char| !c.is_whitespace())
            .map_or(rest.len(), |at| word_end + at);
        out.push_str(&rest[word_end..space_end]);
        rest = &rest[space_end..];
    }
    if out == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(out)
    }
}

/// Where a query string or a parameter value ends inside a word: the quote, bracket or
/// separator that a message or URL puts after it.
fn value_end(text: &str) -> usize {
    text.find(['"', '\'', ')', '>', ']', '&', ';', ','])
        .unwrap_or(text.len())
}

fn redact_word(word: &str) -> Cow<'_, str> {
    // Punctuation that quotes or ends the word in a message is not part of a userinfo or URL
    // (`"user:pw@host:5000"` must not read as `name:tag@digest` because of its last quote).
    let unopened = word.trim_start_matches(['"', '\'', '(', '<', '[', '`']);
    let core = unopened.trim_end_matches(['"', '\'', ')', '>', ']', '`', ',', ';', '.', ':']);
    let lead = word.len() - unopened.len();
    let (prefix, suffix) = (&word[..lead], &word[lead + core.len()..]);
    let mut body = core.to_string();
    if let Some(at) = body.find('?') {
        let query = &body[at + 1..];
        let end = query
            .find(['"', '\'', ')', '>', ']'])
            .unwrap_or(query.len());
        if end > 0 {
            body = format!("{}?***{}", &body[..at], &query[end..]);
        }
    }
    let head_end = body.find('?').unwrap_or(body.len());
    if let Some(redacted) = redact_userinfo(&body[..head_end]) {
        body = format!("{redacted}{}", &body[head_end..]);
    }
    let body = redact_secret_parameters(&body);
    if body == core {
        Cow::Borrowed(word)
    } else {
        Cow::Owned(format!("{prefix}{body}{suffix}"))
    }
}

/// Key fragments that make a `key=value` a secret, compared in lower case.
const SECRET_KEYS: [&str; 8] = [
    "token",
    "password",
    "passwd",
    "secret",
    "signature",
    "credential",
    "auth",
    "apikey",
];

/// `key=***` for every `key=value` whose key contains one of [`SECRET_KEYS`].
fn redact_secret_parameters(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
            .map_or(0, |(at, c)| at + c.len_utf8());
        let key = rest[key_start..eq].to_ascii_lowercase();
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        if SECRET_KEYS.iter().any(|secret| key.contains(secret)) {
            let end = value_end(rest);
            if end > 0 && &rest[..end] != "***" {
                out.push_str("***");
            } else {
                out.push_str(&rest[..end]);
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(secret.expose(), "hunter2");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            password: Secret,
        }
        let shown = format!("{:?}", Holder { password: secret });
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn userinfo_is_recognised_with_or_without_a_path() {
        assert_eq!(
            redact_userinfo("user:hunter2@example.com/x").as_deref(),
            Some("***@example.com/x")
        );
        assert_eq!(
            redact_userinfo("https://user:p@ss/word@example.com:5000/x:1").as_deref(),
            Some("https://***@example.com:5000/x:1")
        );
        assert_eq!(
            redact_userinfo("user:hunter2@localhost:5000").as_deref(),
            Some("***@localhost:5000")
        );
        assert_eq!(redact_userinfo("x:1@sha256:abcdef"), None);
        assert_eq!(redact_userinfo("x@sha256:abcdef"), None);
        assert_eq!(redact_userinfo("quay.io/x/y"), None);
        // A `://` after the `@` is not the scheme's: what it redacted stays as it is.
        assert_eq!(redact_userinfo("u@h://x").as_deref(), Some("***@h://x"));
        assert_eq!(redact_userinfo("***@://").as_deref(), Some("***@://"));
    }

    #[test]
    fn redact_hides_userinfo_queries_and_secret_parameters() {
        for (input, shown) in [
            ("admin:S3cret@127.0.0.1:5000", "***@127.0.0.1:5000"),
            ("host/repo:1?access_token=abc", "host/repo:1?***"),
            (
                "https://u:p@h/v2/x?X-Amz-Signature=s",
                "https://***@h/v2/x?***",
            ),
            (
                "see \"https://h/t?token=x\" now",
                "see \"https://h/t?***\" now",
            ),
            ("login password=hunter2, then", "login password=***, then"),
            ("a;api_token=t;b=c", "a;api_token=***;b=c"),
            ("(user:pw@registry.lan/x)", "(***@registry.lan/x)"),
            ("quay.io/x/y:1@sha256:abcdef", "quay.io/x/y:1@sha256:abcdef"),
            ("what? nothing", "what? nothing"),
            ("jobs=8", "jobs=8"),
        ] {
            assert_eq!(redact(input), shown, "{input}");
        }
        assert!(matches!(redact("ubuntu:20.04"), Cow::Borrowed(_)));
    }
}
