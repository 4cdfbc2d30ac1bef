//! Where credentials come from: explicit values, the Docker config and its helpers.

use super::*;

fn config(json: &str) -> DockerConfig {
    DockerConfig::parse(json, Path::new("config.json")).unwrap()
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn inline_auth_base64_and_username_password() {
    let json = format!(
        r#"{{"auths": {{
            "https://index.docker.io/v1/": {{"auth": "{}"}},
            "quay.io": {{"username": "robot", "password": "pw:with:colons"}},
            "empty.example": {{}}
        }}}}"#,
        b64("hubuser:hub:pass")
    );
    let config = config(&json);
    assert_eq!(
        config.lookup("docker.io").unwrap(),
        DockerConfigLookup::Inline(Credential::new("hubuser", "hub:pass"))
    );
    assert_eq!(
        config.lookup("quay.io").unwrap(),
        DockerConfigLookup::Inline(Credential::new("robot", "pw:with:colons"))
    );
    assert_eq!(
        config.lookup("empty.example").unwrap(),
        DockerConfigLookup::None
    );
    assert_eq!(config.lookup("ghcr.io").unwrap(), DockerConfigLookup::None);
}

#[test]
fn cred_helpers_take_precedence_over_creds_store_and_auths() {
    let json = format!(
        r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}},
             "credsStore": "desktop",
             "credHelpers": {{"123.dkr.ecr.us-east-1.amazonaws.com": "ecr-login"}}}}"#,
        b64("u:p")
    );
    let config = config(&json);
    assert_eq!(
        config
            .lookup("123.dkr.ecr.us-east-1.amazonaws.com")
            .unwrap(),
        DockerConfigLookup::Helper {
            helper: "ecr-login".into(),
            inline: None
        }
    );
    assert_eq!(
        config.lookup("quay.io").unwrap(),
        DockerConfigLookup::Helper {
            helper: "desktop".into(),
            inline: Some(Credential::new("u", "p"))
        }
    );
}

#[test]
fn malformed_auth_is_a_clear_error_without_the_secret() {
    let config = config(r#"{"auths": {"quay.io": {"auth": "%%%not-base64-secret"}}}"#);
    let error = config.lookup("quay.io").unwrap_err().to_string();
    assert!(
        error.contains("quay.io") && error.contains("base64"),
        "{error}"
    );
    assert!(!error.contains("not-base64-secret"), "{error}");
    let config = config_with_auth(&b64("no-colon"));
    assert!(config.lookup("quay.io").is_err());
}

fn config_with_auth(auth: &str) -> DockerConfig {
    config(&format!(
        r#"{{"auths": {{"quay.io": {{"auth": "{auth}"}}}}}}"#
    ))
}

#[test]
fn unknown_fields_and_empty_documents_parse() {
    let config = config(r#"{"HttpHeaders": {"User-Agent": "x"}, "psFormat": "table"}"#);
    assert_eq!(config.lookup("quay.io").unwrap(), DockerConfigLookup::None);
    assert!(DockerConfig::parse("not json", Path::new("c.json")).is_err());
}

#[test]
fn helper_output_parsing() {
    let credential =
        parse_helper_output(r#"{"ServerURL":"quay.io","Username":"AWS","Secret":"tok"}"#)
            .unwrap()
            .unwrap();
    assert_eq!(credential, Credential::new("AWS", "tok"));
    assert_eq!(
        parse_helper_output(r#"{"Username":"","Secret":""}"#).unwrap(),
        None
    );
    assert!(parse_helper_output("garbage").is_err());
}

#[test]
fn command_line_credentials() {
    let credential = Credential::from_user_colon_password("me:pa:ss").unwrap();
    assert_eq!(credential, Credential::new("me", "pa:ss"));
    assert!(Credential::from_user_colon_password("nocolon").is_err());
    assert!(Credential::from_user_colon_password(":pw").is_err());
}

#[cfg(unix)]
#[tokio::test]
async fn runs_credential_helpers_with_the_host_on_stdin() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("docker-credential-fake");
    // Echoes the host it was asked about back as the username, so the test sees the stdin
    // protocol; "missing.example" answers like real helpers do when they hold nothing.
    std::fs::write(
        &helper,
        "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread host\n\
         if [ \"$host\" = missing.example ]; then echo 'credentials not found in native keychain'; exit 1; fi\n\
         if [ \"$host\" = broken.example ]; then echo 'boom' >&2; exit 2; fi\n\
         printf '{\"ServerURL\":\"%s\",\"Username\":\"%s\",\"Secret\":\"s3cret\"}' \"$host\" \"$host\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let json = format!(
        r#"{{"credsStore": "fake", "auths": {{"missing.example": {{"auth": "{}"}}}}}}"#,
        b64("inline:pw")
    );
    let provider =
        DockerConfigCredentials::from_config(Some(config(&json))).with_helper_dir(dir.path());

    let quay = provider.credentials("quay.io").await.unwrap().unwrap();
    assert_eq!(quay, Credential::new("quay.io", "s3cret"));
    let hub = provider.credentials("docker.io").await.unwrap().unwrap();
    assert_eq!(hub.username, "https://index.docker.io/v1/");
    let fallback = provider.credentials("missing.example").await.unwrap();
    assert_eq!(fallback, Some(Credential::new("inline", "pw")));
    let error = provider
        .credentials("broken.example")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("docker-credential-fake") && error.contains("boom"),
        "{error}"
    );
}
