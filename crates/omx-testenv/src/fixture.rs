//! OCI image layouts written to disk (streaming, any layer size) and pushed with skopeo.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tempfile::TempDir;

use crate::layer::{splitmix64, write_layer};
use crate::registry::Registry;
use crate::tools::{find_tool, Tool};

/// OCI image-spec media types.
pub mod oci {
    /// OCI image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI gzip'd tar layer.
    pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
}

/// Docker image manifest v2 schema 2 media types.
pub mod docker {
    /// Docker v2 schema 2 manifest.
    pub const MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker container config.
    pub const CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip'd tar layer.
    pub const LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}

/// Which manifest media types a fixture uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI image manifest / index.
    Oci,
    /// Docker v2 schema 2 manifest / manifest list.
    DockerV2,
}

impl Format {
    fn manifest(self) -> &'static str {
        match self {
            Format::Oci => oci::MANIFEST,
            Format::DockerV2 => docker::MANIFEST,
        }
    }

    fn index(self) -> &'static str {
        match self {
            Format::Oci => oci::INDEX,
            Format::DockerV2 => docker::MANIFEST_LIST,
        }
    }

    fn config(self) -> &'static str {
        match self {
            Format::Oci => oci::CONFIG,
            Format::DockerV2 => docker::CONFIG,
        }
    }

    fn layer(self) -> &'static str {
        match self {
            Format::Oci => oci::LAYER_GZIP,
            Format::DockerV2 => docker::LAYER_GZIP,
        }
    }
}

/// One layer: a gzip'd tar holding a single file of `size` pseudo-random bytes from `seed`.
///
/// The same seed and size always give the same blob, so images that list the same spec share
/// that layer (as a base image layer would be shared). The blob is `size` plus about 0.02%
/// (tar records, stored-deflate block headers) plus 1.6 KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LayerSpec {
    /// Seed of the content.
    pub seed: u64,
    /// Bytes of random file content in the tar.
    pub size: u64,
}

impl LayerSpec {
    /// A layer of `size` random bytes from `seed`.
    pub const fn new(seed: u64, size: u64) -> LayerSpec {
        LayerSpec { seed, size }
    }

    /// `count` distinct layers of `size` bytes whose seeds derive from `seed`.
    pub fn distinct(seed: u64, count: usize, size: u64) -> Vec<LayerSpec> {
        (0..count as u64)
            .map(|index| LayerSpec::new(splitmix64(seed ^ splitmix64(index)), size))
            .collect()
    }

    /// The same layer varied per platform, so an index's images do not share it.
    fn for_platform(self, platform_index: usize) -> LayerSpec {
        if platform_index == 0 {
            self
        } else {
            LayerSpec::new(
                splitmix64(self.seed ^ splitmix64(!(platform_index as u64))),
                self.size,
            )
        }
    }
}

/// A content descriptor (media type, digest, size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the content.
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
}

impl Descriptor {
    fn to_json(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }
}

/// One image manifest of a fixture.
#[derive(Debug, Clone)]
pub struct FixtureImage {
    /// `(os, architecture)`; an architecture like `arm64/v8` carries the variant after the slash.
    pub platform: (String, String),
    /// The manifest itself.
    pub manifest: Descriptor,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, base first.
    pub layers: Vec<Descriptor>,
    /// `rootfs.diff_ids` of the config (digests of the uncompressed tars).
    pub diff_ids: Vec<String>,
}

/// An OCI image layout on disk (`oci-layout`, `index.json`, `blobs/sha256/...`) holding one
/// image or one multi-platform index, with everything written by this crate.
#[derive(Debug)]
pub struct ImageFixture {
    layout: PathBuf,
    _temp: Option<TempDir>,
    root: Descriptor,
    images: Vec<FixtureImage>,
}

const SINGLE_PLATFORM: (&str, &str) = ("linux", "amd64");

impl ImageFixture {
    /// A single-platform (linux/amd64) image in a fresh temp dir; panics on I/O errors.
    pub fn single(layers: &[LayerSpec], format: Format) -> ImageFixture {
        let temp = fixture_temp_dir();
        let mut fixture =
            ImageFixture::write_single(temp.path(), layers, format).unwrap_or_else(|error| {
                panic!(
                    "cannot write an image fixture in {}: {error}",
                    temp.path().display()
                )
            });
        fixture._temp = Some(temp);
        fixture
    }

    /// A multi-platform index in a fresh temp dir; panics on I/O errors. Each platform gets
    /// its own variant of every layer (derived from the spec's seed), so platforms share no blob.
    pub fn index(platforms: &[(&str, &str)], layers: &[LayerSpec], format: Format) -> ImageFixture {
        let temp = fixture_temp_dir();
        let mut fixture = ImageFixture::write_index(temp.path(), platforms, layers, format)
            .unwrap_or_else(|error| {
                panic!(
                    "cannot write an image fixture in {}: {error}",
                    temp.path().display()
                )
            });
        fixture._temp = Some(temp);
        fixture
    }

    /// Writes a single-platform image layout into `dir` (created if needed, kept afterwards).
    pub fn write_single(
        dir: &Path,
        layers: &[LayerSpec],
        format: Format,
    ) -> io::Result<ImageFixture> {
        let mut writer = LayoutWriter::create(dir)?;
        let image = writer.write_image(SINGLE_PLATFORM, layers, format)?;
        let root = image.manifest.clone();
        writer.finish(&root)?;
        Ok(ImageFixture {
            layout: dir.to_path_buf(),
            _temp: None,
            root,
            images: vec![image],
        })
    }

    /// Writes a multi-platform index layout into `dir` (created if needed, kept afterwards).
    pub fn write_index(
        dir: &Path,
        platforms: &[(&str, &str)],
        layers: &[LayerSpec],
        format: Format,
    ) -> io::Result<ImageFixture> {
        let mut writer = LayoutWriter::create(dir)?;
        let mut images = Vec::with_capacity(platforms.len());
        for (platform_index, &platform) in platforms.iter().enumerate() {
            let platform_layers: Vec<LayerSpec> = layers
                .iter()
                .map(|layer| layer.for_platform(platform_index))
                .collect();
            images.push(writer.write_image(platform, &platform_layers, format)?);
        }
        let manifests: Vec<Value> = images
            .iter()
            .map(|image| {
                let mut entry = image.manifest.to_json();
                entry["platform"] = platform_json(&image.platform.0, &image.platform.1);
                entry
            })
            .collect();
        let index =
            json!({ "schemaVersion": 2, "mediaType": format.index(), "manifests": manifests });
        let root = writer.write_json_blob(format.index(), &index)?;
        writer.finish(&root)?;
        Ok(ImageFixture {
            layout: dir.to_path_buf(),
            _temp: None,
            root,
            images,
        })
    }

    /// The OCI layout directory (`oci:<dir>` for skopeo).
    pub fn layout_dir(&self) -> &Path {
        &self.layout
    }

    /// Digest of the top-level manifest (single image) or index.
    pub fn digest(&self) -> &str {
        &self.root.digest
    }

    /// Descriptor of the top-level manifest or index.
    pub fn root(&self) -> &Descriptor {
        &self.root
    }

    /// The image manifests (one for [`ImageFixture::single`]).
    pub fn images(&self) -> &[FixtureImage] {
        &self.images
    }

    /// Where the blob (or manifest) with `digest` is stored in the layout.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        blob_path(&self.layout, digest)
    }

    /// The bytes of the top-level manifest or index, as pushed.
    pub fn root_bytes(&self) -> Vec<u8> {
        fs::read(self.blob_path(self.digest())).expect("the fixture's root manifest is readable")
    }

    /// Pushes the fixture to `registry` as `repo:tag` (see [`push_with_skopeo`]).
    pub fn push(&self, registry: &Registry, repo_and_tag: &str) -> String {
        push_with_skopeo(&self.layout, registry, repo_and_tag)
    }
}

fn fixture_temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("omx-fixture-")
        .tempdir()
        .expect("cannot create a temp dir for an image fixture")
}

fn platform_json(os: &str, architecture: &str) -> Value {
    match architecture.split_once('/') {
        Some((architecture, variant)) => {
            json!({ "os": os, "architecture": architecture, "variant": variant })
        }
        None => json!({ "os": os, "architecture": architecture }),
    }
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    layout.join("blobs/sha256").join(hex)
}

/// Writes blobs into a layout, producing each distinct layer once.
struct LayoutWriter {
    layout: PathBuf,
    written_layers: HashMap<LayerSpec, (String, u64, String)>,
    temp_counter: u64,
}

impl LayoutWriter {
    fn create(layout: &Path) -> io::Result<LayoutWriter> {
        fs::create_dir_all(layout.join("blobs/sha256"))?;
        fs::write(
            layout.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )?;
        Ok(LayoutWriter {
            layout: layout.to_path_buf(),
            written_layers: HashMap::new(),
            temp_counter: 0,
        })
    }

    fn write_image(
        &mut self,
        platform: (&str, &str),
        layers: &[LayerSpec],
        format: Format,
    ) -> io::Result<FixtureImage> {
        let mut layer_descriptors = Vec::with_capacity(layers.len());
        let mut diff_ids = Vec::with_capacity(layers.len());
        for &spec in layers {
            let (digest, size, diff_id) = self.write_layer(spec)?;
            layer_descriptors.push(Descriptor {
                media_type: format.layer().to_string(),
                digest,
                size,
            });
            diff_ids.push(diff_id);
        }
        let (os, architecture) = platform;
        let mut config = platform_json(os, architecture);
        let seeds: Vec<String> = layers
            .iter()
            .map(|layer| format!("{}:{}", layer.seed, layer.size))
            .collect();
        config["created"] = json!("1970-01-01T00:00:00Z");
        config["config"] =
            json!({ "Labels": { "org.omx-ecr-helper.fixture.layers": seeds.join(",") } });
        config["rootfs"] = json!({ "type": "layers", "diff_ids": diff_ids });
        config["history"] = layers
            .iter()
            .map(|layer| json!({ "created": "1970-01-01T00:00:00Z", "created_by": format!("omx-fixture layer seed {}", layer.seed) }))
            .collect();
        let config_descriptor = self.write_json_blob(format.config(), &config)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest(),
            "config": config_descriptor.to_json(),
            "layers": layer_descriptors.iter().map(Descriptor::to_json).collect::<Vec<_>>(),
        });
        let manifest_descriptor = self.write_json_blob(format.manifest(), &manifest)?;
        Ok(FixtureImage {
            platform: (os.to_string(), architecture.to_string()),
            manifest: manifest_descriptor,
            config: config_descriptor,
            layers: layer_descriptors,
            diff_ids,
        })
    }

    fn write_layer(&mut self, spec: LayerSpec) -> io::Result<(String, u64, String)> {
        if let Some(written) = self.written_layers.get(&spec) {
            return Ok(written.clone());
        }
        let (digest, size, diff_id) = self.write_blob_with(|out| {
            write_layer(spec.seed, spec.size, out).map(|digests| digests.diff_id)
        })?;
        let written = (digest, size, diff_id);
        self.written_layers.insert(spec, written.clone());
        Ok(written)
    }

    fn write_json_blob(&mut self, media_type: &str, value: &Value) -> io::Result<Descriptor> {
        let bytes = serde_json::to_vec(value).expect("JSON values serialize");
        let (digest, size, ()) = self.write_blob_with(|out| out.write_all(&bytes))?;
        Ok(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
        })
    }

    /// Streams a blob through SHA-256 into a temp file and renames it to its digest.
    fn write_blob_with<T>(
        &mut self,
        produce: impl FnOnce(&mut HashingWriter) -> io::Result<T>,
    ) -> io::Result<(String, u64, T)> {
        self.temp_counter += 1;
        let temp_path = self
            .layout
            .join(format!("blobs/sha256/.partial-{}", self.temp_counter));
        let mut writer = HashingWriter {
            out: BufWriter::with_capacity(1 << 20, File::create(&temp_path)?),
            digest: Sha256::new(),
            length: 0,
        };
        let produced = produce(&mut writer)?;
        writer.out.flush()?;
        let digest = format!("sha256:{}", hex::encode(writer.digest.finalize()));
        fs::rename(&temp_path, blob_path(&self.layout, &digest))?;
        Ok((digest, writer.length, produced))
    }

    fn finish(self, root: &Descriptor) -> io::Result<()> {
        let index =
            json!({ "schemaVersion": 2, "mediaType": oci::INDEX, "manifests": [root.to_json()] });
        fs::write(
            self.layout.join("index.json"),
            serde_json::to_vec(&index).expect("JSON values serialize"),
        )
    }
}

struct HashingWriter {
    out: BufWriter<File>,
    digest: Sha256,
    length: u64,
}

impl Write for HashingWriter {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.out.write(buffer)?;
        self.digest.update(&buffer[..written]);
        self.length += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Where and how skopeo pushes a layout.
#[derive(Clone, Default)]
pub struct PushTarget {
    /// `HOST:PORT` of the registry.
    pub host: String,
    /// Basic-auth user and password.
    pub credentials: Option<(String, String)>,
    /// Directory with `ca.crt` trusted for the registry's TLS certificate.
    pub cert_dir: Option<PathBuf>,
    /// Require HTTPS with a verified certificate (false: plain HTTP or unverified TLS).
    pub tls_verify: bool,
}

impl std::fmt::Debug for PushTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushTarget")
            .field("host", &self.host)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("cert_dir", &self.cert_dir)
            .field("tls_verify", &self.tls_verify)
            .finish()
    }
}

impl PushTarget {
    /// The target for a test [`Registry`]: its credentials, and its CA when it serves TLS.
    pub fn for_registry(registry: &Registry) -> PushTarget {
        PushTarget {
            host: registry.host(),
            credentials: registry.credentials(),
            cert_dir: registry.cert_dir().map(Path::to_path_buf),
            tls_verify: registry.is_tls(),
        }
    }
}

/// The digest of the single manifest or index named by a layout's `index.json`.
pub fn layout_root_digest(layout: &Path) -> io::Result<String> {
    let index_path = layout.join("index.json");
    let index: Value = serde_json::from_slice(&fs::read(&index_path)?).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {error}", index_path.display()),
        )
    })?;
    match index["manifests"].as_array().map(Vec::as_slice) {
        Some([only]) => only["digest"].as_str().map(str::to_string).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: manifest without digest", index_path.display()),
            )
        }),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: expected exactly one manifest", index_path.display()),
        )),
    }
}

/// Pushes a layout with `skopeo copy --all --preserve-digests` to `target` as `repo:tag` and
/// returns the pushed manifest (or index) digest, read from the layout's `index.json`.
pub fn push_layout(layout: &Path, target: &PushTarget, repo_and_tag: &str) -> io::Result<String> {
    let digest = layout_root_digest(layout)?;
    let skopeo = find_tool(Tool::Skopeo).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "skopeo is not installed: run scripts/install-deps",
        )
    })?;
    let mut command = Command::new(skopeo);
    command
        .args([
            "--insecure-policy",
            "copy",
            "--all",
            "--preserve-digests",
            "--retry-times",
            "2",
        ])
        .arg(format!("--dest-tls-verify={}", target.tls_verify));
    if let Some(cert_dir) = &target.cert_dir {
        command.arg("--dest-cert-dir").arg(cert_dir);
    }
    match &target.credentials {
        Some((user, password)) => command
            .arg("--dest-creds")
            .arg(format!("{user}:{password}")),
        None => command.arg("--dest-no-creds"),
    };
    let destination = format!("docker://{}/{repo_and_tag}", target.host);
    let output = command
        .arg(format!("oci:{}", layout.display()))
        .arg(&destination)
        .output()?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "skopeo copy oci:{} {destination} failed ({}): {}",
            layout.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(digest)
}

/// Pushes a layout to a test [`Registry`] (its credentials and CA applied) as `repo:tag` and
/// returns the manifest (or index) digest; panics with skopeo's error on failure.
pub fn push_with_skopeo(layout: &Path, registry: &Registry, repo_and_tag: &str) -> String {
    push_layout(layout, &PushTarget::for_registry(registry), repo_and_tag).unwrap_or_else(|error| {
        panic!(
            "pushing to {}: {error}\nregistry log:\n{}",
            registry.host(),
            registry.log()
        )
    })
}
