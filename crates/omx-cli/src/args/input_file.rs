//! Files a user names: read bounded, shown escaped.

use crate::exit::UnusableInput;

/// The most of an input file read: the manifests' own limit (the largest of our inputs). Far
/// more than any real manifest, rule file or workflow file; it exists so that `/dev/zero`, a
/// disk image or an endless pipe fail at once instead of filling memory.
pub const MAX_INPUT_FILE_BYTES: usize = omx_core::manifest_file::MAX_MANIFEST_BYTES;

/// Reads a user-named input file, at most [`MAX_INPUT_FILE_BYTES`] and only a regular one (see
/// [`omx_registry::input::read_user_file`]); failing to read it makes the whole run unusable
/// (exit 2).
pub fn read_input_file(path: &std::path::Path) -> anyhow::Result<String> {
    omx_registry::input::read_user_text(path, MAX_INPUT_FILE_BYTES)
        .map_err(|e| UnusableInput(format!("cannot read {}: {e}", shown_path(path))).into())
}

/// A user-named path as every message shows it: escaped, so that a name holding escape
/// sequences or line breaks prints as one inert line.
pub fn shown_path(path: &std::path::Path) -> String {
    omx_core::excerpt::escape(&path.display().to_string()).into_owned()
}

#[cfg(test)]
mod tests {
    //! The manifest file reader as a fuzzing target: arbitrary bytes in, never a panic, the text
    //! exactly when it is UTF-8 within the limit, else one line naming the file. 256 cases by
    //! default; `PROPTEST_CASES` sets more.

    use super::*;
    use proptest::prelude::*;

    fn error_of(result: anyhow::Result<String>) -> String {
        let error = result.unwrap_err();
        assert!(error.downcast_ref::<UnusableInput>().is_some(), "{error:#}");
        format!("{error:#}")
    }

    proptest! {
        #[test]
        fn any_file_reads_back_exactly_or_fails_naming_it(
            bytes in prop_oneof![
                prop::collection::vec(any::<u8>(), 0..2_000),
                "\\PC{0,400}".prop_map(String::into_bytes),
            ],
            name in "[a-z]{1,6}[\u{0}-\u{1f}\u{7f}\u{202e}]?\\.json",
        ) {
            // A file name cannot hold NUL.
            prop_assume!(!name.contains('\0'));
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(&name);
            std::fs::write(&path, &bytes).unwrap();
            match std::str::from_utf8(&bytes) {
                Ok(text) => {
                    let read = read_input_file(&path).unwrap();
                    prop_assert_eq!(read.as_str(), text);
                    // What reads it next must not panic either.
                    let _ = omx_core::manifest_file::parse_pull_manifest(&read);
                }
                Err(_) => {
                    let message = error_of(read_input_file(&path));
                    prop_assert!(message.contains("not valid UTF-8"), "{message}");
                    prop_assert!(message.contains(&shown_path(&path)), "{message}");
                    prop_assert!(!message.chars().any(char::is_control), "{message:?}");
                }
            }
        }
    }

    #[test]
    fn the_limit_is_exact_and_only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let at_limit = dir.path().join("at-limit.json");
        std::fs::write(&at_limit, vec![b' '; MAX_INPUT_FILE_BYTES]).unwrap();
        assert_eq!(
            read_input_file(&at_limit).unwrap().len(),
            MAX_INPUT_FILE_BYTES
        );
        let over = dir.path().join("over.json");
        std::fs::write(&over, vec![b' '; MAX_INPUT_FILE_BYTES + 1]).unwrap();
        assert!(error_of(read_input_file(&over)).contains("the limit is"));
        let link = dir.path().join("link.json");
        std::os::unix::fs::symlink(&at_limit, &link).unwrap();
        assert!(read_input_file(&link).is_ok());
        for (special, kind) in [("/dev/null", "a device"), ("/", "a directory")] {
            let message = error_of(read_input_file(std::path::Path::new(special)));
            assert!(message.contains(kind), "{message}");
        }
    }
}
