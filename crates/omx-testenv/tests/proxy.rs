//! The fault proxy forwards to a real registry, rewrites Location, records requests, and
//! injects each fault on schedule.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use omx_testenv::{
    http_request, push_layout, upload_blob, Fault, FaultProxy, FaultRule, Format, ImageFixture,
    LayerSpec, PushTarget, Registry,
};
use sha2::{Digest as _, Sha256};

fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

#[test]
fn forwards_rewrites_location_and_records_requests() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let proxy = FaultProxy::start(&registry);
    let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let digest = upload_blob(&proxy.host(), "source/repo", &blob);

    let fetched = http_request(
        &proxy.host(),
        "GET",
        &blob_path("source/repo", &digest),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.body, blob);

    let mount = format!("/v2/target/repo/blobs/uploads/?mount={digest}&from=source/repo");
    let mounted = http_request(&proxy.host(), "POST", &mount, &[], &[]).unwrap();
    assert_eq!(mounted.status, 201, "{}", mounted.text());

    let requests = proxy.requests();
    let methods: Vec<&str> = requests
        .iter()
        .map(|(method, _, _)| method.as_str())
        .collect();
    assert_eq!(methods, ["POST", "PUT", "GET", "POST"]);
    assert!(
        requests.contains(&("POST".to_string(), mount, 201)),
        "{requests:?}"
    );
    assert_eq!(proxy.faults_injected(), 0);
}

#[test]
fn keeps_client_connections_alive_across_requests() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let proxy = FaultProxy::start(&registry);
    let mut stream = TcpStream::connect(proxy.host()).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..2 {
        write!(
            stream,
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\n\r\n",
            proxy.host()
        )
        .unwrap();
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        assert!(status_line.starts_with("HTTP/1.1 200"), "{status_line:?}");
        let mut content_length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; content_length];
        reader.read_exact(&mut body).unwrap();
    }
    assert_eq!(proxy.requests().len(), 2);
}

#[test]
fn injects_status_faults_on_schedule() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let proxy = FaultProxy::start(&registry);
    let digest = upload_blob(&proxy.host(), "r/throttled", b"hello blob");
    proxy.add_rule(
        FaultRule::new(Fault::too_many_requests(7))
            .method("GET")
            .path_contains("/blobs/")
            .times(1),
    );
    proxy.add_rule(
        FaultRule::new(Fault::status(503))
            .method("GET")
            .path_contains("/blobs/")
            .skip(1)
            .times(1),
    );
    let path = blob_path("r/throttled", &digest);

    let throttled = http_request(&proxy.host(), "GET", &path, &[], &[]).unwrap();
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.header("retry-after"), Some("7"));
    assert!(throttled.text().contains("TOOMANYREQUESTS"));
    // The second matching request is skipped by the 503 rule, the third gets it.
    let passed = http_request(&proxy.host(), "GET", &path, &[], &[]).unwrap();
    assert_eq!(passed.status, 200);
    let unavailable = http_request(&proxy.host(), "GET", &path, &[], &[]).unwrap();
    assert_eq!(unavailable.status, 503);
    let after = http_request(&proxy.host(), "GET", &path, &[], &[]).unwrap();
    assert_eq!(after.body, b"hello blob");

    let statuses: Vec<u16> = proxy
        .requests()
        .iter()
        .skip(2)
        .map(|(_, _, status)| status)
        .copied()
        .collect();
    assert_eq!(statuses, [429, 200, 503, 200]);
    assert_eq!(proxy.faults_injected(), 2);
}

#[test]
fn injects_body_faults() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let proxy = FaultProxy::start(&registry);
    let blob: Vec<u8> = (0..50_000u32).map(|i| (i % 253) as u8).collect();
    let digest = upload_blob(&proxy.host(), "r/body", &blob);
    let path = blob_path("r/body", &digest);
    let get = || http_request(&proxy.host(), "GET", &path, &[], &[]);

    proxy.add_rule(
        FaultRule::new(Fault::ResetMidBody)
            .path_contains(&digest)
            .times(1),
    );
    let reset = get().expect_err("a reset mid-body fails the request");
    assert_eq!(reset.kind(), ErrorKind::ConnectionReset, "{reset}");

    proxy.clear_rules();
    proxy.add_rule(
        FaultRule::new(Fault::TruncateBody)
            .path_contains(&digest)
            .times(1),
    );
    let truncated = get().expect_err("a truncated body fails the request");
    assert_eq!(truncated.kind(), ErrorKind::UnexpectedEof, "{truncated}");

    proxy.clear_rules();
    proxy.add_rule(
        FaultRule::new(Fault::CorruptByte)
            .path_contains(&digest)
            .times(1),
    );
    let corrupted = get().unwrap();
    assert_eq!(corrupted.body.len(), blob.len());
    let differing = corrupted
        .body
        .iter()
        .zip(&blob)
        .filter(|(got, sent)| got != sent)
        .count();
    assert_eq!(differing, 1);
    assert_ne!(digest_of(&corrupted.body), digest);

    proxy.clear_rules();
    proxy.add_rule(
        FaultRule::new(Fault::Stall(Duration::from_millis(50)))
            .path_contains(&digest)
            .times(1),
    );
    proxy.add_rule(
        FaultRule::new(Fault::StallMidBody(Duration::from_millis(50)))
            .path_contains(&digest)
            .times(1),
    );
    assert_eq!(
        get().unwrap().body,
        blob,
        "a stalled response still arrives whole"
    );
    assert_eq!(
        get().unwrap().body,
        blob,
        "a response stalled mid-body still arrives whole"
    );

    proxy.clear_rules();
    proxy.add_rule(FaultRule::new(Fault::Reset).times(1));
    assert!(
        get().is_err(),
        "a reset before forwarding fails the request"
    );
    assert_eq!(get().unwrap().body, blob);

    let faults: Vec<Fault> = proxy
        .records()
        .iter()
        .filter_map(|record| record.fault)
        .collect();
    assert_eq!(faults.len(), 6, "{faults:?}");
    assert_eq!(
        proxy
            .records()
            .iter()
            .filter(|record| record.status == 0)
            .count(),
        1
    );
}

#[test]
fn probabilistic_rules_follow_the_seed() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let faulted_indices = |seed: u64| -> Vec<usize> {
        let rule = FaultRule::new(Fault::status(500))
            .path_contains("/v2/")
            .probability(0.5);
        let proxy = FaultProxy::start_for(&registry.host(), seed, vec![rule]);
        (0..24)
            .filter(|_| {
                let response = http_request(&proxy.host(), "GET", "/v2/", &[], &[]).unwrap();
                response.status == 500
            })
            .collect()
    };
    let first = faulted_indices(42);
    assert_eq!(first, faulted_indices(42), "same seed, same schedule");
    assert_ne!(first, faulted_indices(43), "another seed, another schedule");
    assert!(
        !first.is_empty() && first.len() < 24,
        "p=0.5 over 24 requests: {first:?}"
    );
}

#[test]
fn skopeo_pushes_through_the_proxy_and_the_proxy_stops_on_drop() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    let proxy = FaultProxy::start(&registry);
    let fixture = ImageFixture::single(&[LayerSpec::new(3, 300_000)], Format::Oci);
    let target = PushTarget {
        host: proxy.host(),
        ..PushTarget::default()
    };
    let digest = push_layout(fixture.layout_dir(), &target, "via/proxy:1").unwrap();
    assert_eq!(digest, fixture.digest());
    let manifest = http_request(
        &registry.host(),
        "GET",
        &format!("/v2/via/proxy/manifests/{digest}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        &[],
    )
    .unwrap();
    assert_eq!(manifest.status, 200);
    assert!(proxy
        .requests()
        .iter()
        .any(|(method, target, status)| method == "PUT"
            && target.starts_with("/v2/via/proxy/manifests/")
            && *status == 201));

    let host = proxy.host();
    drop(proxy);
    assert!(
        TcpStream::connect(&host).is_err(),
        "proxy still accepts after drop"
    );
}

/// The CONNECT proxy tunnels a routed name to its local server and refuses every other one, so
/// a test can never reach the internet through it.
#[test]
fn connect_proxy_tunnels_routed_hosts_and_refuses_the_rest() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let local = listener.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut hello = [0u8; 5];
        stream.read_exact(&mut hello).unwrap();
        stream.write_all(b"world").unwrap();
        hello
    });
    let proxy = omx_testenv::ConnectProxy::start(&[("quay.io:443", &local)]);
    let address = proxy.url().trim_start_matches("http://").to_string();

    let mut refused = std::net::TcpStream::connect(&address).unwrap();
    refused
        .write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    refused.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");

    let mut tunnel = std::net::TcpStream::connect(&address).unwrap();
    // The first bytes of the tunnel may ride in the same packet as the head.
    tunnel
        .write_all(b"CONNECT Quay.io:443 HTTP/1.1\r\nHost: quay.io:443\r\n\r\nhello")
        .unwrap();
    let mut head = [0u8; 39];
    tunnel.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200 Connection Established\r\n\r\n");
    let mut reply = [0u8; 5];
    tunnel.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"world");
    assert_eq!(&server.join().unwrap(), b"hello");
    assert_eq!(proxy.requested(), ["example.com:443", "quay.io:443"]);
}
