//! A TCP proxy that puts a wide-area link between a client and a loopback server: every byte
//! arrives half a round trip after it was sent, in order, a new connection costs one round
//! trip before its first byte (the TCP handshake), and each direction of each connection is
//! capped at a bandwidth. `scripts/bench-latency` puts one in front of each registry so that
//! tools are compared where users run them: across the internet, not on loopback.
//!
//! The model is netem's (`tc qdisc ... netem delay`): a fixed one-way delay per chunk and a
//! rate limit, no loss and no jitter; `tc` itself would need root and would slow every loopback
//! user of the machine, not just the benchmark.
//!
//! usage: omx-delay-proxy --to HOST:PORT --rtt-ms N [--mbit N]
//! Listens on a free loopback port, prints `127.0.0.1:PORT` on the first line of standard
//! output, and serves until killed.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

struct Link {
    one_way: Duration,
    /// Bytes per second each direction may carry; `None` for no cap.
    rate: Option<f64>,
}

fn main() {
    let mut to = None;
    let mut rtt_ms: u64 = 0;
    let mut mbit: Option<f64> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--to" => to = Some(value()),
            "--rtt-ms" => rtt_ms = value().parse().unwrap_or_else(|_| usage("--rtt-ms N")),
            "--mbit" => mbit = Some(value().parse().unwrap_or_else(|_| usage("--mbit N"))),
            _ => usage(&format!("unknown argument {arg}")),
        }
    }
    let to = to.unwrap_or_else(|| usage("--to HOST:PORT is required"));
    let link = Link {
        one_way: Duration::from_millis(rtt_ms) / 2,
        rate: mbit.map(|mbit| mbit * 1_000_000.0 / 8.0),
    };
    let listener = TcpListener::bind("127.0.0.1:0").expect("cannot bind a loopback port");
    println!("{}", listener.local_addr().expect("the listening address"));
    io::stdout().flush().expect("cannot write the port");
    let link: &'static Link = Box::leak(Box::new(link));
    for client in listener.incoming().flatten() {
        let to = to.clone();
        thread::spawn(move || {
            // A new connection's first byte waits for the handshake: one round trip.
            thread::sleep(link.one_way * 2);
            let Ok(server) = TcpStream::connect(&to) else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (Ok(client_read), Ok(server_read)) = (client.try_clone(), server.try_clone())
            else {
                return;
            };
            let up = thread::spawn(move || carry(client_read, server, link));
            carry(server_read, client, link);
            let _ = up.join();
        });
    }
}

/// Copies `from` to `to` through the link: each chunk read is written one-way delay later, no
/// faster than the rate allows.
fn carry(mut from: TcpStream, mut to: TcpStream, link: &'static Link) {
    let (sender, receiver) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = thread::spawn(move || {
        let mut line_free_at = Instant::now();
        for (due, chunk) in receiver {
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            if let Some(rate) = link.rate {
                // The chunk occupies the link for its size over the rate, after what is ahead.
                let start = line_free_at.max(Instant::now());
                line_free_at = start + Duration::from_secs_f64(chunk.len() as f64 / rate);
                let now = Instant::now();
                if line_free_at > now {
                    thread::sleep(line_free_at - now);
                }
            }
            if to.write_all(&chunk).is_err() {
                return;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                let due = Instant::now() + link.one_way;
                if sender.send((due, buffer[..read].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    drop(sender);
    let _ = writer.join();
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "omx-delay-proxy: {problem}\nusage: omx-delay-proxy --to HOST:PORT --rtt-ms N [--mbit N]"
    );
    std::process::exit(2)
}
