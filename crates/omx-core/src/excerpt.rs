//! Bounded, terminal-safe echoes of user input. Errors and reports quote the entry they are
//! about, but an entry of 100,000 characters (or a 4 MiB JSON object where a string belongs) is
//! not worth repeating in full, twice, in every error line and report; and an argument, a path or
//! a server's message may carry escape sequences that would move the cursor, clear the screen or
//! retitle the terminal. [`escape`] and [`printable`] are the one way such text is made safe.

use std::borrow::Cow;

use crate::secret::redact;

/// The longest input echoed whole: every valid image reference fits (a 255-character name, a
/// 128-character tag and a digest).
pub const MAX_ECHO_CHARS: usize = 512;

/// How much of an over-long input is shown.
const SHOWN_CHARS: usize = 64;

/// `text` itself when it is at most [`MAX_ECHO_CHARS`] characters long; otherwise its start,
/// an ellipsis and its length.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    match over_long(text) {
        None => Cow::Borrowed(text),
        Some((start, length)) => Cow::Owned(format!("{start}… ({length} characters)")),
    }
}

/// [`excerpt`] of the [`redact`]ed text, quoted and escaped as `{:?}` does (the ellipsis and
/// length outside the quotes).
pub fn quoted(text: &str) -> String {
    let text = redact(text);
    let text = text.as_ref();
    match over_long(text) {
        None => format!("{text:?}"),
        Some((start, length)) => format!("{start:?}… ({length} characters)"),
    }
}

/// `text` with every control character (newlines included) and every invisible formatting
/// character (bidirectional overrides, zero-width spaces) written as a Rust escape (`\u{1b}`,
/// `\n`), for one-line echoes of arguments, paths and server messages.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_where(text, needs_escape)
}

/// [`escape`], except that line breaks are kept: for text laid out in lines by us.
pub fn printable(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\n' && needs_escape(c))
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

fn escape_where(text: &str, escaped: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(&escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if escaped(c) {
            // `escape_default` writes `\n`, `\t`, `\r` and `\u{..}` for everything else.
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn over_long(text: &str) -> Option<(&str, usize)> {
    let length = text.chars().count();
    if length <= MAX_ECHO_CHARS {
        return None;
    }
    let end = text
        .char_indices()
        .nth(SHOWN_CHARS)
        .map_or(text.len(), |(at, _)| at);
    Some((&text[..end], length))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_echoed_whole() {
        let longest_valid = "a".repeat(MAX_ECHO_CHARS);
        assert_eq!(excerpt(&longest_valid), longest_valid);
        assert_eq!(quoted("ubuntu:20.04\n"), "\"ubuntu:20.04\\n\"");
    }

    #[test]
    fn escape_leaves_no_control_or_invisible_character() {
        let hostile = "h:5000\u{1b}[2J\u{1b}]0;x\u{7}\r\n\u{202e}\u{200b}é";
        assert_eq!(
            escape(hostile),
            "h:5000\\u{1b}[2J\\u{1b}]0;x\\u{7}\\r\\n\\u{202e}\\u{200b}é"
        );
        assert_eq!(printable("a\nb\u{1b}"), "a\nb\\u{1b}");
        assert!(matches!(escape("linux/amd64"), Cow::Borrowed(_)));
        assert_eq!(quoted("x:1?token=t"), "\"x:1?***\"");
    }

    #[test]
    fn long_text_is_cut_at_a_character_boundary_and_says_how_long_it_was() {
        let long = "é".repeat(100_000);
        let shown = excerpt(&long);
        assert_eq!(shown, format!("{}… (100000 characters)", "é".repeat(64)));
        assert_eq!(
            quoted(&long),
            format!("\"{}\"… (100000 characters)", "é".repeat(64))
        );
        assert_eq!(
            excerpt(&"b".repeat(MAX_ECHO_CHARS + 1)).chars().count(),
            64 + 18
        );
    }
}
