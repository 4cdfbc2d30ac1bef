//! Reading files a user names (manifests, rule files, CA certificates, the Docker config): only
//! regular files (symlinks to them too), and never more than a limit. A FIFO would block until
//! someone writes, a device or `/proc` entry may never end, a directory is a mistake; a disk
//! image named by accident must fail at once instead of filling memory.

use std::io::{self, Read as _};
use std::path::Path;

/// Limit for files that hold configuration or certificates: far more than any real one.
pub const MAX_CONFIG_FILE_BYTES: usize = 4 * 1024 * 1024;

/// The content of `path`, at most `limit` bytes. Errors keep the kind of the failure
/// (`NotFound` stays `NotFound`) and say what is wrong, without the path: callers name it.
pub fn read_user_file(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    check_regular(&std::fs::metadata(path)?)?;
    let file = std::fs::File::open(path)?;
    // The file opened may not be the one looked at (a rename in between): look again.
    check_regular(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(limit as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is more than {limit} bytes; the limit is {limit}"),
        ));
    }
    Ok(bytes)
}

/// [`read_user_file`] as UTF-8 text (invalid UTF-8 is an `InvalidData` error).
pub fn read_user_text(path: &Path, limit: usize) -> io::Result<String> {
    String::from_utf8(read_user_file(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not valid UTF-8 text"))
}

fn check_regular(metadata: &std::fs::Metadata) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = metadata.file_type();
    let what = if kind.is_file() {
        return Ok(());
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO (named pipe)"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "of an unknown kind"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("it is {what}, not a regular file"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_within_the_limit_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_user_file(&file, 5).unwrap(), b"12345");
        let error = read_user_file(&file, 4).unwrap_err().to_string();
        assert!(error.contains("the limit is 4"), "{error}");
        for (special, kind) in [("/dev/zero", "a device"), ("/", "a directory")] {
            let error = read_user_file(Path::new(special), 1 << 20).unwrap_err();
            assert!(error.to_string().contains(kind), "{error}");
        }
        let missing = read_user_file(&dir.path().join("missing"), 1).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
