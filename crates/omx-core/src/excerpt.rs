//! Bounded echoes of user input. Errors and reports quote the entry they are about, but an
//! entry of 100,000 characters (or a 4 MiB JSON object where a string belongs) is not worth
//! repeating in full, twice, in every error line and report.

use std::borrow::Cow;

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

/// [`excerpt`], quoted and escaped as `{:?}` does (the ellipsis and length outside the quotes).
pub fn quoted(text: &str) -> String {
    match over_long(text) {
        None => format!("{text:?}"),
        Some((start, length)) => format!("{start:?}… ({length} characters)"),
    }
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
