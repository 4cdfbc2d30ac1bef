//! What cannot change on a retry is not retried: a source that itself declares other content
//! than the descriptor names (a blob's `Content-Length` or `Docker-Content-Digest`, a child
//! manifest served under another digest), and 400-class answers other than the documented
//! transient ones. With the production retry policy (5 attempts, 0.5 s first backoff) such a bad
//! image must fail in well under a second, after one request for the offending content.
//!
//! Damage only the bytes show (a flipped byte, a truncated body: `faults.rs`, `fault_suite.rs`)
//! is still retried.

mod common;

use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use omx_core::Digest;
use omx_registry::{ClientConfig, CopyOptions, NoProgress, RetryPolicy};
use omx_testenv::{
    read_request, Fault, FaultProxy, FaultRule, Format, ImageFixture, LayerSpec, Registry,
};
use serde_json::json;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A response: content type, body, and the digest the server claims for it.
#[derive(Clone)]
struct Served {
    content_type: &'static str,
    body: Vec<u8>,
    claimed_digest: Digest,
}

impl Served {
    fn honest(content_type: &'static str, body: Vec<u8>) -> Served {
        Served {
            content_type,
            claimed_digest: Digest::sha256_of(&body),
            body,
        }
    }
}

/// A source registry whose images are wrong in ways no retry changes. Counts GETs per path.
struct BadSource {
    host: String,
    gets: Arc<Mutex<HashMap<String, usize>>>,
    stopping: Arc<AtomicBool>,
}

impl BadSource {
    fn start(routes: HashMap<String, Served>) -> BadSource {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let gets = Arc::new(Mutex::new(HashMap::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (counted, stop) = (gets.clone(), stopping.clone());
        let routes = Arc::new(routes);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let (routes, counted) = (routes.clone(), counted.clone());
                if let Ok(stream) = stream {
                    thread::spawn(move || {
                        let _ = answer(stream, &routes, &counted);
                    });
                }
            }
        });
        BadSource {
            host,
            gets,
            stopping,
        }
    }

    fn gets(&self, path: &str) -> usize {
        self.gets.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

impl Drop for BadSource {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(&self.host);
    }
}

fn answer(
    stream: TcpStream,
    routes: &HashMap<String, Served>,
    gets: &Mutex<HashMap<String, usize>>,
) -> std::io::Result<()> {
    let Some((method, path)) = read_request(&mut BufReader::new(stream.try_clone()?))? else {
        return Ok(());
    };
    if method == "GET" {
        *gets.lock().unwrap().entry(path.clone()).or_default() += 1;
    }
    let mut out = std::io::BufWriter::new(stream);
    let served = match path.as_str() {
        "/v2/" => Some(Served::honest("application/json", b"{}".to_vec())),
        _ => routes.get(&path).cloned(),
    };
    match served {
        Some(served) => {
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nDocker-Content-Digest: {}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                served.content_type,
                served.claimed_digest,
                served.body.len()
            )?;
            if method != "HEAD" {
                out.write_all(&served.body)?;
            }
        }
        None => {
            let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#;
            write!(
                out,
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            if method != "HEAD" {
                out.write_all(body)?;
            }
        }
    }
    out.flush()
}

fn descriptor(media_type: &str, digest: &Digest, size: usize) -> serde_json::Value {
    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size})
}

/// An image manifest of `repository` with one config and one layer, served with its blobs;
/// `layer_descriptor` says what the manifest claims about the layer.
fn image_routes(
    repository: &str,
    routes: &mut HashMap<String, Served>,
    layer_descriptor: impl FnOnce(&Digest, usize) -> (Digest, usize),
) -> Vec<u8> {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = b"a layer no retry will change ".repeat(2_000);
    let (config_digest, layer_digest) = (Digest::sha256_of(config), Digest::sha256_of(&layer));
    let (claimed_digest, claimed_size) = layer_descriptor(&layer_digest, layer.len());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config_digest, config.len()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &claimed_digest, claimed_size)],
    })
    .to_string()
    .into_bytes();
    let blob = |digest: &Digest| format!("/v2/{repository}/blobs/{digest}");
    routes.insert(
        blob(&config_digest),
        Served::honest("application/octet-stream", config.to_vec()),
    );
    // The layer is served under the digest the manifest names, as what it really is.
    routes.insert(
        blob(&claimed_digest),
        Served::honest("application/octet-stream", layer),
    );
    manifest
}

/// The production retry policy: what users wait through.
fn production_engine() -> omx_registry::CopyEngine {
    engine(
        ClientConfig {
            retry: RetryPolicy::default(),
            ..ClientConfig::default()
        },
        CopyOptions::default(),
    )
}

/// Copies `repository:1` from `source` to a fresh registry, expecting a quick failure.
async fn copy_fails_fast(source: &BadSource, repository: &str) -> (String, Duration) {
    let target = Registry::start();
    let started = Instant::now();
    let error = production_engine()
        .copy(
            &reference(&format!("{}/{repository}:1", source.host)),
            &reference(&format!("{}/{repository}:1", target.host())),
            &NoProgress,
        )
        .await
        .expect_err("a bad image does not copy");
    let took = started.elapsed();
    let message = chain(&error);
    assert!(
        !message.contains("gave up after"),
        "{repository}: retried: {message}"
    );
    assert!(
        took < Duration::from_millis(800),
        "{repository}: took {took:?}: {message}"
    );
    (message, took)
}

#[tokio::test]
async fn a_blob_whose_served_size_differs_from_its_descriptor_gets_one_attempt() {
    let mut routes = HashMap::new();
    let manifest = image_routes("bad/size", &mut routes, |digest, size| {
        (digest.clone(), size + 1)
    });
    routes.insert(
        "/v2/bad/size/manifests/1".into(),
        Served::honest(OCI_MANIFEST, manifest),
    );
    let layer_path = routes
        .keys()
        .find(|path| path.contains("/blobs/") && routes[*path].body.len() > 1_000)
        .cloned()
        .unwrap();
    let source = BadSource::start(routes);
    let (message, _) = copy_fails_fast(&source, "bad/size").await;
    assert!(message.contains("bytes but the manifest says"), "{message}");
    assert_eq!(source.gets(&layer_path), 1, "{message}");
}

#[tokio::test]
async fn a_blob_the_source_says_has_another_digest_gets_one_attempt() {
    let mut routes = HashMap::new();
    let other = Digest::sha256_of(b"what the manifest thinks the layer is");
    let manifest = image_routes("bad/digest", &mut routes, |_, size| (other.clone(), size));
    routes.insert(
        "/v2/bad/digest/manifests/1".into(),
        Served::honest(OCI_MANIFEST, manifest),
    );
    let layer_path = format!("/v2/bad/digest/blobs/{other}");
    let source = BadSource::start(routes);
    let (message, _) = copy_fails_fast(&source, "bad/digest").await;
    assert!(
        message.contains(&other.to_string()) && message.contains("serves"),
        "{message}"
    );
    assert_eq!(source.gets(&layer_path), 1, "{message}");
}

#[tokio::test]
async fn a_child_manifest_served_under_another_digest_gets_one_attempt() {
    let mut routes = HashMap::new();
    let child = image_routes("bad/child", &mut routes, |digest, size| {
        (digest.clone(), size)
    });
    // The index names a child the registry does not serve: it serves another manifest, and
    // says so in `Docker-Content-Digest`.
    let named = Digest::sha256_of(b"the child the index was made with");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{
            "mediaType": OCI_MANIFEST,
            "digest": named.to_string(),
            "size": child.len(),
            "platform": {"os": "linux", "architecture": "amd64"},
        }],
    })
    .to_string()
    .into_bytes();
    routes.insert(
        "/v2/bad/child/manifests/1".into(),
        Served::honest(OCI_INDEX, index),
    );
    let child_path = format!("/v2/bad/child/manifests/{named}");
    routes.insert(child_path.clone(), Served::honest(OCI_MANIFEST, child));
    let source = BadSource::start(routes);
    let (message, _) = copy_fails_fast(&source, "bad/child").await;
    assert!(message.contains(&named.to_string()), "{message}");
    assert_eq!(source.gets(&child_path), 1, "{message}");
}

#[tokio::test]
async fn client_errors_other_than_the_transient_ones_get_one_attempt() {
    let Some(source) = Registry::try_start() else {
        return;
    };
    let image = ImageFixture::single(&LayerSpec::distinct(41, 2, 50_000), Format::Oci);
    image.push(&source, "app/four:1");
    for (fault, method, path) in [
        (
            Fault::RegistryError(400, "MANIFEST_INVALID"),
            "PUT",
            "/manifests/",
        ),
        (
            Fault::RegistryError(400, "BLOB_UPLOAD_INVALID"),
            "POST",
            "/blobs/uploads/",
        ),
        (
            Fault::RegistryError(400, "DIGEST_INVALID"),
            "PUT",
            "/blobs/uploads/",
        ),
        (
            Fault::RegistryError(403, "DENIED"),
            "POST",
            "/blobs/uploads/",
        ),
        (Fault::RegistryError(400, "NAME_INVALID"), "HEAD", "/blobs/"),
    ] {
        let target = Registry::start();
        let proxy = FaultProxy::start(&target);
        proxy.add_rule(FaultRule::new(fault).method(method).path_contains(path));
        let started = Instant::now();
        let error = production_engine()
            .copy(
                &reference(&format!("{}/app/four:1", source.host())),
                &reference(&format!("{}/app/four:1", proxy.host())),
                &NoProgress,
            )
            .await
            .expect_err("a refused copy fails");
        let took = started.elapsed();
        let message = chain(&error);
        assert!(!message.contains("gave up after"), "{fault:?}: {message}");
        assert!(
            took < Duration::from_millis(800),
            "{fault:?} on {method} {path}: took {took:?}: {message}"
        );
    }
}
