//! HTTP plumbing of the stand-ins that front a docker-registry (the ECR stand-in, and the
//! pull-budget stand-in in `pull_budget.rs`): the connection loop, answers they write
//! themselves, and forwarding to the docker-registry that stores the blobs and manifests.

use std::io::{self, BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{json, Value};

use crate::head::{read_head, Head};
use crate::proxy::{body_framing, framing_header, is_hop_by_hop, relay_plain, Framing};

/// One request head, split into the parts the handlers route on.
pub(crate) struct Request {
    pub(crate) method: String,
    /// Path and query as sent.
    pub(crate) target: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) head: Head,
}

impl Request {
    pub(crate) fn from_head(head: Head) -> Request {
        let mut parts = head.start_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_ascii_uppercase();
        let target = parts.next().unwrap_or_default().to_string();
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path.to_string(), parse_query(query)),
            None => (target.clone(), Vec::new()),
        };
        Request {
            method,
            target,
            path,
            query,
            head,
        }
    }

    pub(crate) fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn framing(&self) -> io::Result<Framing> {
        body_framing(&self.head, false)
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let escaped = (bytes[at] == b'%' && at + 2 < bytes.len())
            .then(|| std::str::from_utf8(&bytes[at + 1..at + 3]).ok())
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                at += 3;
            }
            None => {
                out.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The two halves of a client connection.
pub(crate) struct Connection {
    pub(crate) reader: BufReader<TcpStream>,
    pub(crate) writer: BufWriter<TcpStream>,
}

impl Connection {
    pub(crate) fn new(stream: &TcpStream) -> io::Result<Connection> {
        stream.set_read_timeout(Some(Duration::from_secs(120)))?;
        Ok(Connection {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream.try_clone()?),
        })
    }

    pub(crate) fn next_request(&mut self) -> io::Result<Option<Request>> {
        let Some(head) = read_head(&mut self.reader)? else {
            return Ok(None);
        };
        if head.has_token("expect", "100-continue") {
            self.writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.writer.flush()?;
        }
        Ok(Some(Request::from_head(head)))
    }

    /// Reads a request body into memory, refusing more than `limit` bytes (`None` then).
    pub(crate) fn read_body(
        &mut self,
        request: &Request,
        limit: usize,
    ) -> io::Result<Option<Vec<u8>>> {
        let mut body = LimitedSink {
            data: Vec::new(),
            limit,
            over: false,
        };
        relay_plain(&mut self.reader, request.framing()?, &mut body)?;
        Ok((!body.over).then_some(body.data))
    }

    /// Reads and drops a request body (the request is answered without it).
    pub(crate) fn discard_body(&mut self, request: &Request) -> io::Result<()> {
        relay_plain(&mut self.reader, request.framing()?, &mut io::sink())
    }

    /// Writes a complete response.
    pub(crate) fn respond(
        &mut self,
        status: u16,
        headers: &[(&str, String)],
        body: &[u8],
        head_only: bool,
    ) -> io::Result<()> {
        let mut head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.writer.write_all(head.as_bytes())?;
        if !head_only {
            self.writer.write_all(body)?;
        }
        self.writer.flush()
    }

    /// A registry API error in the Distribution spec's JSON form.
    pub(crate) fn registry_error(
        &mut self,
        status: u16,
        code: &str,
        message: &str,
        head_only: bool,
    ) -> io::Result<()> {
        let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
        self.respond(
            status,
            &[
                (
                    "Content-Type",
                    "application/json; charset=utf-8".to_string(),
                ),
                (
                    "Docker-Distribution-Api-Version",
                    "registry/2.0".to_string(),
                ),
            ],
            body.to_string().as_bytes(),
            head_only,
        )
    }

    /// An AWS JSON 1.1 answer (`x-amz-json-1.1`), the control plane's protocol.
    pub(crate) fn aws_json(&mut self, status: u16, body: &Value) -> io::Result<()> {
        let mut headers = vec![("Content-Type", "application/x-amz-json-1.1".to_string())];
        if let Some(kind) = body.get("__type").and_then(Value::as_str) {
            headers.push(("x-amzn-ErrorType", kind.to_string()));
        }
        headers.push((
            "x-amzn-RequestId",
            "00000000-0000-0000-0000-000000000000".into(),
        ));
        self.respond(status, &headers, body.to_string().as_bytes(), false)
    }
}

struct LimitedSink {
    data: Vec<u8>,
    limit: usize,
    over: bool,
}

impl Write for LimitedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.data.len() + buf.len() > self.limit {
            self.over = true;
        } else {
            self.data.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.count += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A response from the backing registry, before it is relayed.
pub(crate) struct BackingResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
}

impl BackingResponse {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub(crate) fn set_header(&mut self, name: &str, value: String) {
        self.headers
            .retain(|(key, _)| !key.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value));
    }
}

/// Where forwarded requests go, and the host clients know the stand-in by (absolute
/// `Location`s pointing at the backing registry are rewritten to it).
pub(crate) struct Backing<'a> {
    pub(crate) host: &'a str,
    pub(crate) public_host: &'a str,
}

/// Forwards `request` (as `target`, its body streamed) to the backing registry and relays the
/// answer, after `rewrite` has changed its status and headers as ECR would. Returns the status
/// sent and the number of request body bytes forwarded.
pub(crate) fn forward(
    connection: &mut Connection,
    backing: &Backing<'_>,
    request: &Request,
    target: &str,
    rewrite: &mut dyn FnMut(&mut BackingResponse),
) -> io::Result<(u16, u64)> {
    let upstream = TcpStream::connect(backing.host)?;
    upstream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut upstream_writer = BufWriter::new(upstream.try_clone()?);
    let mut head = format!(
        "{} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        request.method, backing.host
    );
    for (name, value) in &request.head.headers {
        // The backing registry has no auth: the stand-in checked the caller's token.
        let skip = is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("host")
            || name.eq_ignore_ascii_case("authorization");
        if !skip {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let framing = request.framing()?;
    head.push_str(&framing_header(framing).unwrap_or_default());
    head.push_str("\r\n");
    upstream_writer.write_all(head.as_bytes())?;
    let mut counting = Counting {
        inner: &mut upstream_writer,
        count: 0,
    };
    relay_plain(&mut connection.reader, framing, &mut counting)?;
    let sent = counting.count;
    upstream_writer.flush()?;

    let mut upstream_reader = BufReader::new(upstream);
    let answer = loop {
        let answer = read_head(&mut upstream_reader)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "backing registry closed")
        })?;
        if !status_of(&answer).to_string().starts_with('1') {
            break answer;
        }
    };
    let status = status_of(&answer);
    let framing = if request.method == "HEAD" || status == 204 || status == 304 {
        Framing::Empty
    } else {
        body_framing(&answer, true)?
    };
    let backing_url = format!("http://{}", backing.host);
    let public_url = format!("http://{}", backing.public_host);
    let mut response = BackingResponse {
        status,
        headers: answer
            .headers
            .iter()
            .filter(|(name, _)| !is_hop_by_hop(name))
            .map(|(name, value)| {
                let value = if name.eq_ignore_ascii_case("location") {
                    value.replacen(&backing_url, &public_url, 1)
                } else {
                    value.clone()
                };
                (name.clone(), value)
            })
            .collect(),
    };
    rewrite(&mut response);
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        response.status,
        reason(response.status)
    );
    for (name, value) in &response.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&framing_header(framing).unwrap_or_default());
    head.push_str("\r\n");
    connection.writer.write_all(head.as_bytes())?;
    relay_plain(&mut upstream_reader, framing, &mut connection.writer)?;
    connection.writer.flush()?;
    Ok((response.status, sent))
}

fn status_of(head: &Head) -> u16 {
    head.start_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(502)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        _ => "Status",
    }
}
