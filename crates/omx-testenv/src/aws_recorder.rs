//! [`AwsCallRecorder`]: a plain-HTTP pass-through in front of an AWS emulator (moto) that records
//! which AWS API operation each request was, as the IAM action that authorizes it, so a test can
//! check what a program really calls against the permissions it is deployed with.
//!
//! The operation is read from the request the way AWS reads it (AWS SDK developer guides, "AWS
//! service protocols"; IAM "Actions, resources, and condition keys" per service):
//! - the service is the signing name in the SigV4 `Authorization` credential scope
//!   (`Credential=<key>/<date>/<region>/<service>/aws4_request`), which for the services used
//!   here (ecr, s3, sts, codebuild, secretsmanager, states) is also the IAM prefix;
//! - JSON protocols (ECR, CodeBuild, ...) name the operation in `X-Amz-Target: <Prefix>.<Operation>`;
//! - query protocols (STS) in the form body's `Action=<Operation>`;
//! - S3's REST protocol by method and path (path-style `/<bucket>[/<key>]`): `GET /bucket` is
//!   ListObjects(V2) (`s3:ListBucket`), `GET`/`HEAD /bucket/key` is `s3:GetObject`, `PUT` is
//!   `s3:PutObject`, `DELETE` is `s3:DeleteObject`.
//!
//! Each request is forwarded on a fresh upstream connection and answered with `Connection:
//! close`, so no framing other than `Content-Length` (which the SDKs send for these calls) is
//! needed on the request side, and the response is relayed as is until the upstream closes.

use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::head::read_head;

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsCall {
    /// `service:Operation`, e.g. `ecr:CreateRepository` (`None` when the request names none).
    pub action: Option<String>,
    pub method: String,
    /// Path and query.
    pub target: String,
    /// The request body (JSON or form), for the resource it names.
    pub body: String,
}

struct Shared {
    upstream: String,
    calls: Mutex<Vec<AwsCall>>,
    stopped: AtomicBool,
}

/// Records the calls made through it; stops accepting when dropped.
pub struct AwsCallRecorder {
    host: String,
    shared: Arc<Shared>,
}

impl AwsCallRecorder {
    /// Forwards to `upstream` (`127.0.0.1:PORT` of moto).
    pub fn start(upstream: &str) -> AwsCallRecorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let host = listener
            .local_addr()
            .expect("the bound address")
            .to_string();
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            calls: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        });
        let serving = Arc::clone(&shared);
        thread::spawn(move || {
            while !serving.stopped.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let shared = Arc::clone(&serving);
                        thread::spawn(move || {
                            let _ = relay(client, &shared);
                        });
                    }
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => return,
                }
            }
        });
        AwsCallRecorder { host, shared }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Every call so far, in the order the requests arrived.
    pub fn calls(&self) -> Vec<AwsCall> {
        self.shared.calls.lock().expect("the call log").clone()
    }
}

impl Drop for AwsCallRecorder {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
    }
}

/// The IAM action of a request, from its signing service, headers, body and path.
pub fn iam_action(
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &str,
) -> Option<String> {
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let service = header("authorization")?
        .split("Credential=")
        .nth(1)?
        .split(['/', ',', ' '])
        .nth(3)?
        .to_string();
    if let Some(amz_target) = header("x-amz-target") {
        let operation = amz_target.rsplit('.').next()?;
        return Some(format!("{service}:{operation}"));
    }
    if service == "s3" {
        let path = target.split('?').next().unwrap_or_default();
        // `/bucket` and `/bucket/` name the bucket; anything after the bucket's slash is a key.
        let has_key = path
            .trim_start_matches('/')
            .split_once('/')
            .is_some_and(|(_, key)| !key.is_empty());
        let operation = match (method, has_key) {
            ("GET", false) => "ListBucket",
            ("GET" | "HEAD", true) => "GetObject",
            ("PUT", true) => "PutObject",
            ("DELETE", true) => "DeleteObject",
            ("PUT", false) => "CreateBucket",
            _ => return None,
        };
        return Some(format!("s3:{operation}"));
    }
    body.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(|operation| format!("{service}:{operation}"))
}

fn relay(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = client.try_clone()?;
    let Some(request) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = request.start_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let length: usize = request
        .header("content-length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let text = String::from_utf8_lossy(&body).into_owned();
    shared.calls.lock().expect("the call log").push(AwsCall {
        action: iam_action(&method, &target, &request.headers, &text),
        method: method.clone(),
        target: target.clone(),
        body: text,
    });

    let mut upstream = TcpStream::connect(&shared.upstream)?;
    upstream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (name, value) in &request.headers {
        if !name.eq_ignore_ascii_case("connection") && !name.eq_ignore_ascii_case("expect") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    upstream.write_all(&body)?;
    upstream.flush()?;

    let mut upstream_reader = BufReader::new(upstream);
    let response = read_head(&mut upstream_reader)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "upstream closed without a response",
        )
    })?;
    let mut head = format!("{}\r\n", response.start_line);
    for (name, value) in &response.headers {
        if !name.eq_ignore_ascii_case("connection") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    writer.write_all(head.as_bytes())?;
    io::copy(&mut upstream_reader, &mut writer)?;
    writer.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(service: &str) -> Vec<(String, String)> {
        vec![(
            "Authorization".to_string(),
            format!("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
        )]
    }

    #[test]
    fn actions_come_from_the_signing_service_and_the_protocol() {
        let mut ecr = signed("ecr");
        ecr.push((
            "X-Amz-Target".to_string(),
            "AmazonEC2ContainerRegistry_V20150921.CreateRepository".to_string(),
        ));
        assert_eq!(
            iam_action("POST", "/", &ecr, "{}").as_deref(),
            Some("ecr:CreateRepository")
        );
        let sts = signed("sts");
        assert_eq!(
            iam_action(
                "POST",
                "/",
                &sts,
                "Action=GetCallerIdentity&Version=2011-06-15"
            )
            .as_deref(),
            Some("sts:GetCallerIdentity")
        );
        let s3 = signed("s3");
        assert_eq!(
            iam_action("GET", "/bucket?list-type=2&prefix=a/", &s3, "").as_deref(),
            Some("s3:ListBucket")
        );
        assert_eq!(
            iam_action("GET", "/bucket/a/b.txt", &s3, "").as_deref(),
            Some("s3:GetObject")
        );
        assert_eq!(iam_action("GET", "/", &[], ""), None, "unsigned");
    }
}
