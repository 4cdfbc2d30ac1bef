//! `omx-fixture`: writes synthetic images and pushes them to a registry with skopeo.
//!
//! ```text
//! omx-fixture push --registry HOST:PORT --repo REPO --tag TAG --layers 8 --layer-size 128MiB --seed N
//!                  [--shared-base-seed S --shared-base-size 300MiB] [--format oci|docker]
//!                  [--platforms linux/amd64,linux/arm64] [--creds USER:PASS] [--cert-dir DIR]
//!                  [--insecure] [--layout-dir DIR]
//! ```
//! Prints the pushed manifest (or index) digest on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use omx_testenv::{push_layout, Format, ImageFixture, LayerSpec, PushTarget};

const USAGE: &str = "usage: omx-fixture push --registry HOST:PORT --repo REPO --tag TAG \
[--layers N (default 1)] [--layer-size SIZE (default 1MiB)] [--seed N (default 0)] \
[--shared-base-seed S --shared-base-size SIZE] [--format oci|docker] \
[--platforms OS/ARCH[,OS/ARCH...]] [--creds USER:PASS] [--cert-dir DIR] [--insecure] \
[--layout-dir DIR]
SIZE: bytes, or with a KiB/MiB/GiB (or K/M/G) suffix.
--insecure: plain HTTP or unverified TLS. The layout is written to a temp dir (deleted after the
push) unless --layout-dir is given. Prints the pushed digest.";

struct PushArgs {
    target: PushTarget,
    repo: String,
    tag: String,
    layers: usize,
    layer_size: u64,
    seed: u64,
    shared_base: Option<LayerSpec>,
    format: Format,
    platforms: Vec<(String, String)>,
    layout_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(digest) => {
            println!("{digest}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("omx-fixture: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    match args.first().map(String::as_str) {
        Some("push") => push(parse_push(&args[1..])?),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            std::process::exit(0)
        }
        _ => Err(USAGE.to_string()),
    }
}

fn parse_push(args: &[String]) -> Result<PushArgs, String> {
    let mut parsed = PushArgs {
        target: PushTarget {
            tls_verify: true,
            ..PushTarget::default()
        },
        repo: String::new(),
        tag: String::new(),
        layers: 1,
        layer_size: 1 << 20,
        seed: 0,
        shared_base: None,
        format: Format::Oci,
        platforms: Vec::new(),
        layout_dir: None,
    };
    let mut shared_base_seed = None;
    let mut shared_base_size = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        if flag == "--insecure" {
            parsed.target.tls_verify = false;
            continue;
        }
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--registry" => parsed.target.host = value.clone(),
            "--repo" => parsed.repo = value.clone(),
            "--tag" => parsed.tag = value.clone(),
            "--layers" => parsed.layers = parse_number(flag, value)?,
            "--layer-size" => parsed.layer_size = parse_size(flag, value)?,
            "--seed" => parsed.seed = parse_number(flag, value)?,
            "--shared-base-seed" => shared_base_seed = Some(parse_number(flag, value)?),
            "--shared-base-size" => shared_base_size = Some(parse_size(flag, value)?),
            "--format" => {
                parsed.format = match value.as_str() {
                    "oci" => Format::Oci,
                    "docker" => Format::DockerV2,
                    other => return Err(format!("--format {other:?}: expected oci or docker")),
                }
            }
            "--platforms" => {
                parsed.platforms = value
                    .split(',')
                    .map(|platform| {
                        platform
                            .split_once('/')
                            .map(|(os, arch)| (os.to_string(), arch.to_string()))
                            .ok_or_else(|| format!("--platforms {platform:?}: expected OS/ARCH"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--creds" => {
                let (user, password) = value
                    .split_once(':')
                    .ok_or("--creds: expected USER:PASSWORD")?;
                parsed.target.credentials = Some((user.to_string(), password.to_string()));
            }
            "--cert-dir" => parsed.target.cert_dir = Some(PathBuf::from(value)),
            "--layout-dir" => parsed.layout_dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    for (flag, value) in [
        ("--registry", &parsed.target.host),
        ("--repo", &parsed.repo),
        ("--tag", &parsed.tag),
    ] {
        if value.is_empty() {
            return Err(format!("{flag} is required\n{USAGE}"));
        }
    }
    parsed.shared_base = match (shared_base_seed, shared_base_size) {
        (Some(seed), Some(size)) => Some(LayerSpec::new(seed, size)),
        (None, None) => None,
        _ => return Err("--shared-base-seed and --shared-base-size go together".to_string()),
    };
    Ok(parsed)
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag} {value:?}: expected a whole number"))
}

/// Bytes with an optional binary suffix: `512`, `64KiB`, `128MiB`, `1GiB`, `1G`.
fn parse_size(flag: &str, value: &str) -> Result<u64, String> {
    let digits_end = value
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(value.len());
    let (number, suffix) = value.split_at(digits_end);
    let multiplier: u64 = match suffix.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "{flag} {value:?}: expected bytes or a KiB/MiB/GiB suffix"
            ))
        }
    };
    let number: u64 = parse_number(flag, number)?;
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{flag} {value:?} is too large"))
}

fn push(args: PushArgs) -> Result<String, String> {
    let mut layers: Vec<LayerSpec> = args.shared_base.into_iter().collect();
    layers.extend(LayerSpec::distinct(args.seed, args.layers, args.layer_size));
    let temp;
    let layout_dir = match &args.layout_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("omx-fixture-")
                .tempdir()
                .map_err(|error| format!("cannot create a temp dir: {error}"))?;
            temp.path().to_path_buf()
        }
    };
    let written = if args.platforms.is_empty() {
        ImageFixture::write_single(&layout_dir, &layers, args.format)
    } else {
        let platforms: Vec<(&str, &str)> = args
            .platforms
            .iter()
            .map(|(os, arch)| (os.as_str(), arch.as_str()))
            .collect();
        ImageFixture::write_index(&layout_dir, &platforms, &layers, args.format)
    };
    let fixture = written
        .map_err(|error| format!("writing the layout in {}: {error}", layout_dir.display()))?;
    let repo_and_tag = format!("{}:{}", args.repo, args.tag);
    push_layout(fixture.layout_dir(), &args.target, &repo_and_tag)
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_suffixes() {
        assert_eq!(parse_size("--s", "512"), Ok(512));
        assert_eq!(parse_size("--s", "64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("--s", "128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("--s", "1G"), Ok(1 << 30));
        assert!(parse_size("--s", "12MB").is_err());
        assert!(parse_size("--s", "MiB").is_err());
    }

    #[test]
    fn push_arguments_require_registry_repo_and_tag() {
        let args: Vec<String> = ["--registry", "127.0.0.1:5000", "--repo", "r"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let error = parse_push(&args).err().unwrap();
        assert!(error.contains("--tag is required"), "{error}");
    }
}
