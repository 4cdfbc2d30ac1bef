//! The real services start, answer, enforce their options and die with their handles.

use std::path::Path;

use omx_testenv::{
    base64_encode, basic_auth_header, http_request, moto_ecr_password, Moto, Registry,
    MOTO_ACCOUNT_ID,
};

fn process_is_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn anonymous_registry_answers_and_dies_with_its_handle() {
    let Some(registry) = Registry::try_start() else {
        return;
    };
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    assert!(registry.credentials().is_none());
    assert!(registry.ca_cert_path().is_none());
    let response = http_request(&registry.host(), "GET", "/v2/", &[], &[]).unwrap();
    assert_eq!(response.status, 200, "GET /v2/: {}", response.text());
    assert!(
        registry.log().contains("GET /v2/"),
        "access log missing:\n{}",
        registry.log()
    );
    assert!(registry.storage_dir().is_dir());

    let pid = registry.pid();
    let dir = registry.dir().to_path_buf();
    drop(registry);
    assert!(
        process_is_gone(pid),
        "docker-registry pid {pid} still exists after drop"
    );
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
}

#[test]
fn basic_auth_registry_rejects_missing_and_wrong_credentials() {
    let Some(registry) = Registry::builder()
        .basic_auth("omx", "s3cret-pass")
        .try_start()
    else {
        return;
    };
    assert_eq!(
        registry.credentials(),
        Some(("omx".to_string(), "s3cret-pass".to_string()))
    );
    let host = registry.host();

    let anonymous = http_request(&host, "GET", "/v2/", &[], &[]).unwrap();
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Basic realm="),
        "challenge {challenge:?}"
    );

    let wrong = basic_auth_header("omx", "wrong");
    let rejected = http_request(&host, "GET", "/v2/", &[("Authorization", &wrong)], &[]).unwrap();
    assert_eq!(rejected.status, 401);

    let right = basic_auth_header("omx", "s3cret-pass");
    let accepted = http_request(&host, "GET", "/v2/", &[("Authorization", &right)], &[]).unwrap();
    assert_eq!(accepted.status, 200, "{}", accepted.text());

    let debug = format!("{registry:?}");
    assert!(
        !debug.contains("s3cret-pass"),
        "Debug leaks the password: {debug}"
    );
}

#[test]
fn tls_registry_serves_a_certificate_signed_by_its_ca() {
    let Some(registry) = Registry::builder().tls().try_start() else {
        return;
    };
    assert!(registry.url().starts_with("https://127.0.0.1:"));
    let ca = registry.ca_cert_path().expect("TLS registry has a CA");
    let cert_dir = registry.cert_dir().expect("TLS registry has a cert dir");
    assert_eq!(
        std::fs::read(ca).unwrap(),
        std::fs::read(cert_dir.join("ca.crt")).unwrap()
    );

    // openssl verifies the served chain against the CA and the IP in subjectAltName.
    let output = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &registry.host(), "-CAfile"])
        .arg(ca)
        .args(["-verify_ip", "127.0.0.1", "-verify_return_error", "-brief"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client runs");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && report.contains("Verification: OK"),
        "s_client: {report}"
    );

    // Plain HTTP on the TLS port is refused, so clients cannot silently downgrade.
    let plain = http_request(&registry.host(), "GET", "/v2/", &[], &[]).unwrap();
    assert_eq!(plain.status, 400);
}

#[test]
fn moto_answers_resets_and_hands_out_the_documented_ecr_token() {
    let Some(moto) = Moto::try_start() else {
        return;
    };
    assert!(moto.endpoint().starts_with("http://127.0.0.1:"));

    let authorization = "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/ecr/aws4_request, SignedHeaders=host;x-amz-date, Signature=0000";
    let headers = [
        (
            "X-Amz-Target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        ),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Date", "20250101T000000Z"),
        ("Authorization", authorization),
    ];
    let response = moto.request("POST", "/", &headers, b"{}");
    assert_eq!(response.status, 200, "{}", response.text());
    let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
    let token = body["authorizationData"][0]["authorizationToken"]
        .as_str()
        .unwrap();
    let expected = format!("AWS:{}", moto_ecr_password(MOTO_ACCOUNT_ID));
    assert_eq!(token, base64_encode(expected.as_bytes()));

    moto.enable_stepfunctions_execution();
    let config = moto.request("GET", "/moto-api/config", &[], &[]);
    assert_eq!(config.status, 201, "{}", config.text());
    moto.reset();

    let pid = moto.pid();
    drop(moto);
    assert!(
        process_is_gone(pid),
        "moto_server pid {pid} still exists after drop"
    );
}
