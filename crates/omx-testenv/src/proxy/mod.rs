//! A fault-injecting HTTP/1.1 reverse proxy in front of a plain-HTTP registry.
//!
//! It runs on its own std threads (one acceptor, one per client connection), so it works the
//! same from plain tests and from `#[tokio::test]`. Each client request is forwarded on a fresh
//! upstream connection; absolute `Location` headers pointing at the upstream are rewritten to
//! point at the proxy; every request is recorded; and [`FaultRule`]s decide, on a seeded
//! schedule, which requests get a [`Fault`] instead of (or on top of) the real response.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::head::{read_head, Head};
use crate::layer::splitmix64;
use crate::registry::Registry;

mod body;
mod fault;

pub(crate) use body::{body_framing, framing_header, is_hop_by_hop, relay_plain, Framing};
use body::{relay_body, BodyFaults, Cut, RelayEnd};
pub use fault::{Fault, FaultRule};
use fault::{ProxyState, RuleState};

/// One request as the proxy saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path and query, as sent by the client.
    pub target: String,
    /// The status the client got (0 when the connection was reset before any response).
    pub status: u16,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
}

struct Shared {
    upstream: String,
    proxy_host: String,
    state: Mutex<ProxyState>,
    stopping: AtomicBool,
    /// Clones of the client sockets being served, so dropping the proxy can end them.
    open_connections: Mutex<HashMap<u64, TcpStream>>,
    next_connection_id: AtomicU64,
}

impl Shared {
    fn open_connections(&self) -> MutexGuard<'_, HashMap<u64, TcpStream>> {
        self.open_connections
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, ProxyState> {
        // A panicking connection thread must not take the recorded requests with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, method: &str, target: &str, status: u16, fault: Option<Fault>) {
        self.state().records.push(RequestRecord {
            method: method.to_string(),
            target: target.to_string(),
            status,
            fault,
        });
    }
}

/// A running fault-injecting proxy; dropping it stops accepting, closes open client
/// connections and joins the acceptor thread.
pub struct FaultProxy {
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("host", &self.shared.proxy_host)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

impl FaultProxy {
    /// A proxy in front of a plain-HTTP test registry, with no rules yet and seed 0.
    pub fn start(upstream: &Registry) -> FaultProxy {
        assert!(
            !upstream.is_tls(),
            "FaultProxy speaks plain HTTP; put it in front of a non-TLS registry"
        );
        FaultProxy::start_for(&upstream.host(), 0, Vec::new())
    }

    /// A proxy in front of `upstream_host` (`127.0.0.1:PORT`, plain HTTP) with these rules;
    /// `seed` drives the probabilistic rules.
    pub fn start_for(upstream_host: &str, seed: u64, rules: Vec<FaultRule>) -> FaultProxy {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("cannot bind the fault proxy on 127.0.0.1");
        let proxy_host = listener
            .local_addr()
            .expect("bound listener has an address")
            .to_string();
        let shared = Arc::new(Shared {
            upstream: upstream_host.to_string(),
            proxy_host,
            state: Mutex::new(ProxyState {
                rules: rules
                    .into_iter()
                    .map(|rule| RuleState {
                        rule,
                        matched: 0,
                        fired: 0,
                    })
                    .collect(),
                rng_state: splitmix64(seed),
                records: Vec::new(),
            }),
            stopping: AtomicBool::new(false),
            open_connections: Mutex::new(HashMap::new()),
            next_connection_id: AtomicU64::new(0),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name("fault-proxy-accept".to_string())
            .spawn(move || accept_loop(listener, acceptor_shared))
            .expect("cannot spawn the fault proxy thread");
        FaultProxy {
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// Adds a rule after the existing ones (the first matching rule that fires wins).
    pub fn add_rule(&self, rule: FaultRule) {
        self.shared.state().rules.push(RuleState {
            rule,
            matched: 0,
            fired: 0,
        });
    }

    /// Removes every rule: from now on requests pass through untouched.
    pub fn clear_rules(&self) {
        self.shared.state().rules.clear();
    }

    /// `127.0.0.1:PORT` of the proxy.
    pub fn host(&self) -> String {
        self.shared.proxy_host.clone()
    }

    /// `http://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.proxy_host)
    }

    /// `(method, path+query, status)` of every request so far, in completion order.
    pub fn requests(&self) -> Vec<(String, String, u16)> {
        self.shared
            .state()
            .records
            .iter()
            .map(|record| (record.method.clone(), record.target.clone(), record.status))
            .collect()
    }

    /// Every request so far with the fault injected into it, if any.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.shared.state().records.clone()
    }

    /// How many faults have been injected.
    pub fn faults_injected(&self) -> usize {
        self.shared
            .state()
            .records
            .iter()
            .filter(|record| record.fault.is_some())
            .count()
    }

    /// Forgets the recorded requests (rules and their counters stay).
    pub fn clear_requests(&self) {
        self.shared.state().records.clear();
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the acceptor sees the flag.
        let _ = TcpStream::connect(&self.shared.proxy_host);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let connections = std::mem::take(&mut *self.shared.open_connections());
        for connection in connections.into_values() {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_connection_id.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            shared.open_connections().insert(id, clone);
        }
        let connection_shared = Arc::clone(&shared);
        let spawned = thread::Builder::new()
            .name("fault-proxy-conn".to_string())
            .spawn(move || {
                // An I/O error just ends this client connection, as it would on a real proxy.
                let _ = serve_connection(stream, &connection_shared);
                // Closing the last descriptor of the socket (this clone) is what sends the
                // FIN, or the RST when the connection was aborted.
                connection_shared.open_connections().remove(&id);
            });
        if spawned.is_err() {
            shared.open_connections().remove(&id);
        }
    }
}

fn serve_connection(client: TcpStream, shared: &Shared) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut writer = BufWriter::new(client.try_clone()?);
    // A TLS ClientHello (record type 0x16): answer in plain HTTP at once, as Go servers do,
    // so clients that try HTTPS first (skopeo, containerd) fall back without a timeout.
    if reader.fill_buf()?.first() == Some(&0x16) {
        writer.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        )?;
        writer.flush()?;
        let _ = client.shutdown(Shutdown::Write);
        return Ok(());
    }
    while let Some(request) = read_head(&mut reader)? {
        let mut parts = request.start_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let version = parts.next().unwrap_or("HTTP/1.1").to_string();
        let client_wants_close = request.has_token("connection", "close") || version == "HTTP/1.0";
        if request.has_token("expect", "100-continue") {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            writer.flush()?;
        }
        let request_framing = body_framing(&request, false)?;
        let fault = shared.state().decide(&method, &target);
        let next = match (fault, fault.and_then(Fault::answer_instead)) {
            (Some(Fault::Reset), _) => {
                shared.record(&method, &target, 0, fault);
                ConnectionNext::Abort
            }
            (_, Some((status, code, retry_after))) => {
                relay_body(
                    &mut reader,
                    request_framing,
                    &mut io::sink(),
                    &BodyFaults::default(),
                )?;
                // Recorded before answering: a client that gives up on this answer may
                // read the records at once.
                shared.record(&method, &target, status, fault);
                write_injected_status(&mut writer, status, code, retry_after)?;
                ConnectionNext::KeepAlive
            }
            _ => forward(
                &mut reader,
                &mut writer,
                shared,
                &request,
                &method,
                &target,
                fault,
            )?,
        };
        match next {
            ConnectionNext::KeepAlive if !client_wants_close => writer.flush()?,
            ConnectionNext::KeepAlive | ConnectionNext::Close => break,
            ConnectionNext::Abort => {
                // Drop buffered output and end with a RST when the handles close.
                set_abortive_close(&client);
                return Ok(());
            }
        }
    }
    writer.flush()?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

/// What happens to a client connection after a response.
enum ConnectionNext {
    /// It can carry another request.
    KeepAlive,
    /// It ends with a FIN (the response was close-delimited or cut short).
    Close,
    /// It ends with a RST.
    Abort,
}

/// Writes `status` with a registry-style JSON error: `code`, or the usual one for the status.
fn write_injected_status(
    writer: &mut impl Write,
    status: u16,
    code: Option<&str>,
    retry_after: Option<u64>,
) -> io::Result<()> {
    let (reason, usual_code) = match status {
        400 => ("Bad Request", "UNKNOWN"),
        429 => ("Too Many Requests", "TOOMANYREQUESTS"),
        500 => ("Internal Server Error", "UNKNOWN"),
        502 => ("Bad Gateway", "UNAVAILABLE"),
        503 => ("Service Unavailable", "UNAVAILABLE"),
        _ => ("Injected Fault", "UNKNOWN"),
    };
    let code = code.unwrap_or(usual_code);
    let body = format!(
        r#"{{"errors":[{{"code":"{code}","message":"injected by omx-testenv FaultProxy","detail":null}}]}}"#
    );
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(seconds) = retry_after {
        head.push_str(&format!("Retry-After: {seconds}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;
    writer.write_all(body.as_bytes())?;
    writer.flush()
}

/// Forwards one request upstream and relays the response with `fault` applied.
#[allow(clippy::too_many_arguments)]
fn forward(
    reader: &mut BufReader<TcpStream>,
    writer: &mut BufWriter<TcpStream>,
    shared: &Shared,
    request: &Head,
    method: &str,
    target: &str,
    fault: Option<Fault>,
) -> io::Result<ConnectionNext> {
    let request_framing = body_framing(request, false)?;
    let upstream = match TcpStream::connect(&shared.upstream) {
        Ok(upstream) => upstream,
        Err(_) => {
            relay_body(
                reader,
                request_framing,
                &mut io::sink(),
                &BodyFaults::default(),
            )?;
            shared.record(method, target, 502, fault);
            write_injected_status(writer, 502, None, None)?;
            return Ok(ConnectionNext::KeepAlive);
        }
    };
    upstream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut upstream_writer = BufWriter::new(upstream.try_clone()?);
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        shared.upstream
    );
    for (name, value) in &request.headers {
        if !is_hop_by_hop(name) && !name.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str(&framing_header(request_framing).unwrap_or_default());
    head.push_str("\r\n");
    upstream_writer.write_all(head.as_bytes())?;
    relay_body(
        reader,
        request_framing,
        &mut upstream_writer,
        &BodyFaults::default(),
    )?;
    upstream_writer.flush()?;

    let mut upstream_reader = BufReader::new(upstream);
    let response = loop {
        let response = read_head(&mut upstream_reader)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "upstream closed without a response",
            )
        })?;
        // Interim 1xx responses are consumed here; the client got its own 100 Continue.
        if !response
            .start_line
            .split_whitespace()
            .nth(1)
            .is_some_and(|code| code.starts_with('1'))
        {
            break response;
        }
    };
    let status: u16 = response
        .start_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(502);
    let response_framing = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304
    {
        Framing::Empty
    } else {
        body_framing(&response, true)?
    };
    shared.record(method, target, status, fault);

    if let Some(Fault::Stall(duration)) = fault {
        thread::sleep(duration);
    }
    let upstream_url = format!("http://{}", shared.upstream);
    let proxy_url = format!("http://{}", shared.proxy_host);
    let mut head = format!(
        "{}\r\n",
        response.start_line.replacen("HTTP/1.0", "HTTP/1.1", 1)
    );
    for (name, value) in &response.headers {
        if is_hop_by_hop(name) {
            continue;
        }
        let value = if name.eq_ignore_ascii_case("location") && value.starts_with(&upstream_url) {
            value.replacen(&upstream_url, &proxy_url, 1)
        } else {
            value.clone()
        };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&framing_header(response_framing).unwrap_or_default());
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())?;

    let body_faults = BodyFaults::for_fault(fault, response_framing);
    match relay_body(&mut upstream_reader, response_framing, writer, &body_faults)? {
        RelayEnd::Complete if response_framing == Framing::UntilClose => Ok(ConnectionNext::Close),
        RelayEnd::Complete => Ok(ConnectionNext::KeepAlive),
        RelayEnd::Cut(Cut::Reset) => {
            writer.flush()?;
            Ok(ConnectionNext::Abort)
        }
        RelayEnd::Cut(Cut::Truncate) => Ok(ConnectionNext::Close),
    }
}

/// Makes the socket send a TCP RST instead of a FIN when its last descriptor closes
/// (SO_LINGER with a zero timeout); the connection's threads then just drop their handles.
fn set_abortive_close(stream: &TcpStream) {
    #[cfg(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    ))]
    {
        use std::os::fd::AsRawFd;
        #[repr(C)]
        struct Linger {
            onoff: i32,
            seconds: i32,
        }
        extern "C" {
            fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, length: u32)
                -> i32;
        }
        // asm-generic socket constants, as on x86_64 and aarch64.
        const SOL_SOCKET: i32 = 1;
        const SO_LINGER: i32 = 13;
        let linger = Linger {
            onoff: 1,
            seconds: 0,
        };
        // SAFETY: the fd is open (owned by `stream`, borrowed for this call) and `linger` is a
        // live struct of the size passed.
        unsafe {
            setsockopt(
                stream.as_raw_fd(),
                SOL_SOCKET,
                SO_LINGER,
                &linger,
                std::mem::size_of::<Linger>() as u32,
            );
        }
    }
    // Elsewhere the connection ends with a FIN, which clients also see as a broken response.
    #[cfg(not(all(
        target_os = "linux",
        any(target_arch = "x86_64", target_arch = "aarch64")
    )))]
    let _ = stream;
}
