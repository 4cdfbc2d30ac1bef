//! Accepting connections for the hand-written test servers (token server, ECR stand-in,
//! pull-budget stand-in): one thread per client connection until the server is dropped.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

/// A server's acceptor thread; dropping it stops accepting and joins the thread (connections
/// being served end on their own, as clients close them).
pub(crate) struct Acceptor {
    host: String,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Hands each connection `listener` accepts to `serve` on a thread of its own (named
    /// `<name>-conn`), from an acceptor thread named `name`.
    pub(crate) fn start<S, F>(
        listener: TcpListener,
        name: &str,
        shared: Arc<S>,
        serve: F,
    ) -> Acceptor
    where
        S: Send + Sync + 'static,
        F: Fn(TcpStream, &S) + Copy + Send + 'static,
    {
        let host = listener
            .local_addr()
            .expect("a bound listener has an address")
            .to_string();
        let stopping = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stopping);
        let connection_name = format!("{name}-conn");
        let thread = thread::Builder::new()
            .name(name.to_string())
            .spawn(move || accept_each(listener, &connection_name, shared, &flag, serve))
            .unwrap_or_else(|error| panic!("cannot spawn the {name} thread: {error}"));
        Acceptor {
            host,
            stopping,
            thread: Some(thread),
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the acceptor sees the flag.
        let _ = TcpStream::connect(&self.host);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_each<S, F>(
    listener: TcpListener,
    thread_name: &str,
    shared: Arc<S>,
    stopping: &AtomicBool,
    serve: F,
) where
    S: Send + Sync + 'static,
    F: Fn(TcpStream, &S) + Copy + Send + 'static,
{
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let connection_shared = Arc::clone(&shared);
        // A connection thread that cannot be spawned drops its client, which sees a reset;
        // an I/O error inside `serve` ends that connection only, as on a real server.
        let _ = thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || serve(stream, &connection_shared));
    }
}
