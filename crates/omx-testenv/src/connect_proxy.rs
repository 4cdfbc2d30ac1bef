//! An HTTPS forward proxy (HTTP `CONNECT`, RFC 9110 §9.3.6) that sends the tunnels for named
//! hosts to local servers: the way a test lets a client reach "quay.io" or
//! "registry-1.docker.io" without leaving 127.0.0.1.
//!
//! The client under test runs unchanged: it resolves nothing itself, asks the proxy (from
//! `HTTPS_PROXY`, as corporate networks make it) for a tunnel to `quay.io:443`, and speaks TLS
//! through it with SNI `quay.io`. The local server at the end of the tunnel presents a
//! certificate for that name from a test CA (see
//! [`RegistryBuilder::tls_names`](crate::RegistryBuilder::tls_names)). A `CONNECT` to any
//! host without a route is refused with `403`, so nothing is forwarded off the machine.

use std::io::{self, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::head::read_head;
use crate::server::Acceptor;

struct Shared {
    /// `(authority, local address)`: `("quay.io:443", "127.0.0.1:40123")`.
    routes: Vec<(String, String)>,
    /// Every authority a client asked for, routed or not, in order.
    requested: Mutex<Vec<String>>,
}

/// A running proxy; dropping it stops accepting (tunnels already open run to their end).
pub struct ConnectProxy {
    shared: Arc<Shared>,
    host: String,
    // Dropped last: it joins the acceptor thread.
    _acceptor: Acceptor,
}

impl ConnectProxy {
    /// Starts a proxy on a free loopback port that tunnels `CONNECT authority` to the local
    /// address routed for it: `routes` holds `("quay.io:443", "127.0.0.1:PORT")` pairs.
    pub fn start(routes: &[(&str, &str)]) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind the CONNECT proxy");
        let host = listener
            .local_addr()
            .expect("the CONNECT proxy's address")
            .to_string();
        let shared = Arc::new(Shared {
            routes: routes
                .iter()
                .map(|(from, to)| (from.to_ascii_lowercase(), to.to_string()))
                .collect(),
            requested: Mutex::new(Vec::new()),
        });
        let acceptor = Acceptor::start(
            listener,
            "connect-proxy",
            Arc::clone(&shared),
            |stream, shared| {
                // An I/O error ends this tunnel only.
                let _ = tunnel(stream, shared);
            },
        );
        ConnectProxy {
            shared,
            host,
            _acceptor: acceptor,
        }
    }

    /// The proxy URL, for `HTTPS_PROXY`: `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.host)
    }

    /// Every authority clients asked to `CONNECT` to, in order (routed or refused).
    pub fn requested(&self) -> Vec<String> {
        self.shared
            .requested
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn tunnel(client: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut client = client;
    let mut words = head.start_line.split_whitespace();
    let (Some(method), Some(authority)) = (words.next(), words.next()) else {
        return client.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    };
    if !method.eq_ignore_ascii_case("CONNECT") {
        // Only tunnels: a plain-HTTP request through this proxy would leave the machine.
        return client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n");
    }
    let authority = authority.to_ascii_lowercase();
    shared
        .requested
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(authority.clone());
    let Some((_, local)) = shared.routes.iter().find(|(from, _)| *from == authority) else {
        return client.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    };
    let upstream = match TcpStream::connect(local) {
        Ok(upstream) => upstream,
        Err(_) => {
            return client.write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
        }
    };
    client.write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")?;
    // Bytes the client sent after the head (its TLS ClientHello may already be buffered).
    let early = reader.buffer().to_vec();
    let mut upstream_writer = upstream.try_clone()?;
    upstream_writer.write_all(&early)?;
    let mut client_reader = reader.into_inner();
    let mut upstream_reader = upstream.try_clone()?;
    let mut client_writer = client.try_clone()?;
    let back = thread::Builder::new()
        .name("connect-proxy-back".to_string())
        .spawn(move || {
            let _ = io::copy(&mut upstream_reader, &mut client_writer);
            let _ = client_writer.shutdown(Shutdown::Write);
        })?;
    let _ = io::copy(&mut client_reader, &mut upstream_writer);
    let _ = upstream_writer.shutdown(Shutdown::Write);
    let _ = back.join();
    Ok(())
}
