//! A stand-in for the Lambda Runtime API on a free loopback port: the HTTP interface a custom
//! runtime (`provided.al2023`'s `bootstrap`) polls for invocations and answers on.
//!
//! `GET /2018-06-01/runtime/invocation/next` hands out the queued events one at a time, with the
//! headers Lambda sends (request id `req-1`, `req-2`, ..., deadline, function ARN, trace id); once
//! they are used up it holds the request open, as Lambda does while a function waits for work.
//! Whatever the function posts (`.../invocation/<id>/response`, `.../invocation/<id>/error`,
//! `.../init/error`, or anything else) is reported, in order, by [`RuntimeApi::next_report`].
//!
//! The same port also answers the Lambda service's `Invoke` API for this function (synchronous,
//! `RequestResponse`), as Step Functions' `lambda:invoke` integration calls it:
//! `POST /2015-03-31/functions/<name or ARN>/invocations` with the event as the body queues an
//! invocation (request id `inv-1`, `inv-2`, ...) and answers with what the function posted: the
//! response body with status 200, or its error document with status 200 and header
//! `X-Amz-Function-Error: Handled` ("the runtime caught an error thrown by the function and
//! formatted it into a JSON document", AWS Lambda API reference, Invoke). Those reports go to the
//! caller, not to [`RuntimeApi::next_report`]. Several `bootstrap` processes may poll one stand-in,
//! as several execution environments of one function poll theirs.

use std::collections::{HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";
const INVOKE_PREFIX: &str = "/2015-03-31/functions/";
/// How long an `Invoke` waits for the function: its 15-minute timeout is far more than a test has.
const INVOKE_TIMEOUT: Duration = Duration::from_secs(300);
/// How often blocked threads look whether the stand-in was dropped.
const POLL: Duration = Duration::from_millis(50);

/// What the function sent back to the Runtime API.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// `POST /runtime/invocation/<id>/response`
    Response { request_id: String, body: Value },
    /// `POST /runtime/invocation/<id>/error`, with its `Lambda-Runtime-Function-Error-Type`.
    Error {
        request_id: String,
        error_type: Option<String>,
        body: Value,
    },
    /// `POST /runtime/init/error`: the function failed before asking for work.
    InitError { body: Value },
    /// A request this stand-in does not know, or cannot parse.
    Unexpected { request: String },
}

pub struct RuntimeApi {
    address: String,
    reports: Receiver<Report>,
    stopped: Arc<AtomicBool>,
    shared: Arc<Shared>,
}

struct Shared {
    function_name: String,
    events: Mutex<VecDeque<(String, Value)>>,
    reports: Mutex<Sender<Report>>,
    /// `Invoke` calls waiting for their invocation's report, by request id.
    invokers: Mutex<HashMap<String, Sender<Report>>>,
    /// Every event an `Invoke` call queued, in order.
    invoked: Mutex<Vec<Value>>,
    stopped: Arc<AtomicBool>,
}

impl RuntimeApi {
    /// Serves `events` to the function `function_name`, in order.
    pub fn start(function_name: &str, events: Vec<Value>) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener
            .local_addr()
            .expect("the bound address")
            .to_string();
        let (sender, reports) = mpsc::channel();
        let stopped = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            function_name: function_name.to_string(),
            events: Mutex::new(
                events
                    .into_iter()
                    .enumerate()
                    .map(|(index, event)| (format!("req-{}", index + 1), event))
                    .collect(),
            ),
            reports: Mutex::new(sender),
            invokers: Mutex::new(HashMap::new()),
            invoked: Mutex::new(Vec::new()),
            stopped: Arc::clone(&stopped),
        });
        let serving = Arc::clone(&shared);
        thread::spawn(move || accept_loop(&listener, &serving));
        RuntimeApi {
            address,
            reports,
            stopped,
            shared,
        }
    }

    /// `127.0.0.1:PORT`, the value of `AWS_LAMBDA_RUNTIME_API`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// `http://127.0.0.1:PORT`: where the Lambda `Invoke` API of this function is served.
    pub fn invoke_endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The events `Invoke` calls passed to the function so far, in order.
    pub fn invoked_events(&self) -> Vec<Value> {
        self.shared
            .invoked
            .lock()
            .expect("the invoked events")
            .clone()
    }

    /// The function's next report, or `None` when none came within `wait`.
    pub fn next_report(&self, wait: Duration) -> Option<Report> {
        match self.reports.recv_timeout(wait) {
            Ok(report) => Some(report),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("the Runtime API stand-in stopped"),
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let shared = Arc::clone(shared);
                thread::spawn(move || {
                    // A connection error ends only that connection; the function reconnects.
                    let _ = serve_connection(stream, &shared);
                });
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(error) => panic!("Runtime API stand-in: accept failed: {error}"),
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Serves one keep-alive connection until the client closes it or the stand-in is dropped.
fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader, shared)? else {
            return Ok(());
        };
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", NEXT_PATH) => {
                let Some((request_id, event)) = wait_for_event(shared) else {
                    return Ok(());
                };
                let deadline_ms = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .expect("a clock after 1970")
                    .as_millis()
                    + 15 * 60 * 1000;
                let function_arn = format!(
                    "arn:aws:lambda:us-east-1:123456789012:function:{}",
                    shared.function_name
                );
                let headers = [
                    ("Lambda-Runtime-Aws-Request-Id", request_id.as_str()),
                    ("Lambda-Runtime-Deadline-Ms", &deadline_ms.to_string()),
                    ("Lambda-Runtime-Invoked-Function-Arn", &function_arn),
                    (
                        "Lambda-Runtime-Trace-Id",
                        "Root=1-00000000-000000000000000000000000;Sampled=0",
                    ),
                ];
                respond(&mut writer, "200 OK", &headers, &event.to_string())?;
            }
            ("POST", path) if path.starts_with(INVOKE_PREFIX) && path.ends_with("/invocations") => {
                let (status, headers, body) = invoke(shared, &request.body);
                respond(&mut writer, status, &headers, &body)?;
                // A client that asked to close reads the answer until the connection ends.
                if request
                    .header("Connection")
                    .is_some_and(|value| value.eq_ignore_ascii_case("close"))
                {
                    return Ok(());
                }
            }
            ("POST", path) => {
                let report = report_of(&request, path);
                let accepted = !matches!(report, Report::Unexpected { .. });
                deliver(shared, report);
                if accepted {
                    respond(&mut writer, "202 Accepted", &[], r#"{"status":"OK"}"#)?;
                } else {
                    respond(&mut writer, "404 Not Found", &[], "{}")?;
                }
            }
            _ => {
                report_unexpected(shared, format!("{} {}", request.method, request.path));
                respond(&mut writer, "404 Not Found", &[], "{}")?;
            }
        }
    }
}

fn report_of(request: &Request, path: &str) -> Report {
    let body = || serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    if path == INIT_ERROR_PATH {
        return Report::InitError { body: body() };
    }
    let invocation = path.strip_prefix(INVOCATION_PREFIX).unwrap_or_default();
    if let Some(request_id) = invocation.strip_suffix("/response") {
        return Report::Response {
            request_id: request_id.to_string(),
            body: body(),
        };
    }
    if let Some(request_id) = invocation.strip_suffix("/error") {
        return Report::Error {
            request_id: request_id.to_string(),
            error_type: request
                .header("Lambda-Runtime-Function-Error-Type")
                .map(str::to_string),
            body: body(),
        };
    }
    Report::Unexpected {
        request: format!("POST {path}"),
    }
}

/// Hands a report to the `Invoke` call waiting for it, else to [`RuntimeApi::next_report`].
fn deliver(shared: &Shared, report: Report) {
    let request_id = match &report {
        Report::Response { request_id, .. } | Report::Error { request_id, .. } => Some(request_id),
        _ => None,
    };
    let invoker =
        request_id.and_then(|id| shared.invokers.lock().expect("the invokers").remove(id));
    match invoker {
        Some(invoker) => invoker.send(report).ok(),
        None => shared
            .reports
            .lock()
            .expect("the report channel")
            .send(report)
            .ok(),
    };
}

/// A synchronous `Invoke`: queues the event and answers with the function's report.
fn invoke(
    shared: &Shared,
    body: &[u8],
) -> (&'static str, Vec<(&'static str, &'static str)>, String) {
    let Ok(event) = serde_json::from_slice::<Value>(body) else {
        // What Lambda answers to a payload that is not JSON.
        let error = r#"{"Type":"User","message":"Could not parse request body into json"}"#;
        return (
            "400 Bad Request",
            vec![("X-Amzn-ErrorType", "InvalidRequestContentException")],
            error.to_string(),
        );
    };
    let (sender, receiver) = mpsc::channel();
    {
        let mut invoked = shared.invoked.lock().expect("the invoked events");
        invoked.push(event.clone());
        let request_id = format!("inv-{}", invoked.len());
        shared
            .invokers
            .lock()
            .expect("the invokers")
            .insert(request_id.clone(), sender);
        shared
            .events
            .lock()
            .expect("the event queue")
            .push_back((request_id, event));
    }
    let executed = ("X-Amz-Executed-Version", "$LATEST");
    match receiver.recv_timeout(INVOKE_TIMEOUT) {
        Ok(Report::Response { body, .. }) => ("200 OK", vec![executed], body.to_string()),
        Ok(Report::Error { body, .. }) => (
            "200 OK",
            vec![executed, ("X-Amz-Function-Error", "Handled")],
            body.to_string(),
        ),
        // Lambda's answer when a function does not finish: an Unhandled timeout error.
        _ => (
            "200 OK",
            vec![executed, ("X-Amz-Function-Error", "Unhandled")],
            r#"{"errorType":"Sandbox.Timedout","errorMessage":"Task timed out"}"#.to_string(),
        ),
    }
}

fn report_unexpected(shared: &Shared, request: String) {
    shared
        .reports
        .lock()
        .expect("the report channel")
        .send(Report::Unexpected { request })
        .ok();
}

/// The next queued event; when there is none, holds the request until the stand-in is dropped.
fn wait_for_event(shared: &Shared) -> Option<(String, Value)> {
    loop {
        if let Some(event) = shared.events.lock().expect("the event queue").pop_front() {
            return Some(event);
        }
        if shared.stopped.load(Ordering::SeqCst) {
            return None;
        }
        thread::sleep(POLL);
    }
}

/// Reads one request; `None` when the connection closed (or the stand-in was dropped) first.
fn read_request(reader: &mut BufReader<TcpStream>, shared: &Shared) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return Ok(None),
            Ok(_) => head.extend_from_slice(&line),
            Err(error) if is_timeout(&error) => {
                head.extend_from_slice(&line);
                if shared.stopped.load(Ordering::SeqCst) {
                    return Ok(None);
                }
            }
            Err(error) => return Err(error),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_string();
    let path = request_line.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    if request.header("Transfer-Encoding").is_some() {
        report_unexpected(
            shared,
            format!(
                "{} {} with a chunked body (only Content-Length bodies are understood)",
                request.method, request.path
            ),
        );
        return Ok(None);
    }
    let length: usize = request
        .header("Content-Length")
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; length];
    let mut filled = 0;
    while filled < length {
        match reader.read(&mut request.body[filled..]) {
            Ok(0) => return Ok(None),
            Ok(read) => filled += read,
            Err(error) if is_timeout(&error) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(Some(request))
}

fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn respond(
    writer: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> io::Result<()> {
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str("\r\n");
    response.push_str(body);
    writer.write_all(response.as_bytes())?;
    writer.flush()
}
