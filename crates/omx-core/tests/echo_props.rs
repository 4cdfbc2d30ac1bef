//! Property tests as fuzzing for the two functions every echo goes through: [`redact`] (no
//! credential written into a reference, URL or message is shown) and [`escape`]/[`printable`]
//! (no control or invisible formatting character reaches a terminal), and for [`quoted`], which
//! combines them with the length bound. Arbitrary input must never panic.
//!
//! Case counts follow proptest's default (256), overridable with `PROPTEST_CASES` for a longer
//! fuzzing session.

use omx_core::excerpt::{escape, printable, quoted};
use omx_core::secret::redact;
use omx_core::Reference;
use proptest::prelude::*;

/// What a terminal would act on: control characters and the invisible formatting ones.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A secret as users type them: no whitespace (which ends a word) and none of the characters
/// that end a query value or parameter in a message.
fn secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!$%*+.:^_~-]{6,24}".prop_filter("not a placeholder", |s| !s.contains("***"))
}

/// Text around a secret: anything printable, spaces included.
fn surrounding() -> impl Strategy<Value = String> {
    prop_oneof!["\\PC{0,30}", "[a-z0-9 ./:\"()-]{0,30}"]
}

proptest! {
    #[test]
    fn escaped_text_is_terminal_safe(text in any::<String>()) {
        let escaped = escape(&text);
        prop_assert!(!escaped.chars().any(is_unsafe), "{escaped:?}");
        let lines = printable(&text);
        prop_assert!(!lines.chars().any(|c| c != '\n' && is_unsafe(c)), "{lines:?}");
        prop_assert_eq!(lines.matches('\n').count(), text.matches('\n').count());
        let shown = quoted(&text);
        prop_assert!(!shown.chars().any(is_unsafe), "{shown:?}");
    }

    #[test]
    fn text_without_unsafe_characters_is_left_alone(text in "\\PC{0,80}") {
        prop_assume!(!text.chars().any(is_unsafe));
        prop_assert_eq!(escape(&text), text.as_str());
    }

    #[test]
    fn redaction_never_panics_and_is_idempotent(text in any::<String>()) {
        let once = redact(&text).into_owned();
        prop_assert_eq!(redact(&once), once.as_str());
    }

    #[test]
    fn userinfo_before_a_host_is_never_shown(
        user in "[a-z][a-z0-9_-]{0,10}",
        password in secret(),
        host in prop_oneof!["127\\.0\\.0\\.1:[0-9]{2,5}", "[a-z]{1,10}\\.example\\.com", "localhost:5000"],
        scheme in prop_oneof![Just(""), Just("https://"), Just("http://")],
        path in prop_oneof![Just(String::new()), "(/[a-z0-9]{1,8}){1,3}(:[a-z0-9.]{1,8})?"],
        before in surrounding(),
        after in surrounding(),
    ) {
        let value = format!("{scheme}{user}:{password}@{host}{path}");
        for text in [value.clone(), format!("{before} {value} {after}"), format!("\"{value}\"")] {
            let shown = redact(&text);
            prop_assert!(!shown.contains(&password), "{text:?} -> {shown:?}");
            prop_assert!(shown.contains(&host), "{text:?} -> {shown:?}");
            let quoted_text = quoted(&text);
            prop_assert!(!quoted_text.contains(&password), "{quoted_text:?}");
        }
        // The reference parser refuses it without repeating it.
        if let Err(error) = Reference::parse(&value) {
            prop_assert!(!error.to_string().contains(&password), "{error}");
        }
    }

    #[test]
    fn query_strings_and_secret_parameters_are_never_shown(
        token in secret(),
        key in prop_oneof![
            Just("access_token"), Just("token"), Just("X-Amz-Signature"), Just("password"),
            Just("client_secret"), Just("X-Amz-Credential"), Just("authorization"), Just("q"),
        ],
        prefix in "[a-z0-9./:]{1,30}",
        before in surrounding(),
        after in surrounding(),
    ) {
        let in_query = [
            format!("{prefix}?{key}={token}"),
            format!("{before} {prefix}?a=1&{key}={token} {after}"),
            format!("{before} ({prefix}?{key}={token}) {after}"),
        ];
        // `q` is no secret's name: it is hidden only as part of a query string.
        let as_parameter = (key != "q").then(|| format!("{before} {prefix};{key}={token},{after}"));
        for text in in_query.into_iter().chain(as_parameter) {
            let shown = redact(&text);
            prop_assert!(!shown.contains(&token), "{text:?} -> {shown:?}");
            prop_assert!(!quoted(&text).contains(&token));
            if let Err(error) = Reference::parse(&text) {
                prop_assert!(!error.to_string().contains(&token), "{error}");
            }
        }
    }
}
