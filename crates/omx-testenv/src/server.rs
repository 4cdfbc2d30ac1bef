//! Accepting connections for the hand-written test servers (token server, ECR stand-in): one
//! thread per client connection until the server is told to stop.

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

/// Hands each connection `listener` accepts to `serve` on a thread of its own (named
/// `thread_name`), until `stopping` is set; the server wakes the loop with a connection of its
/// own after setting it.
pub(crate) fn accept_each<S, F>(
    listener: TcpListener,
    thread_name: &str,
    shared: Arc<S>,
    stopping: fn(&S) -> &AtomicBool,
    serve: F,
) where
    S: Send + Sync + 'static,
    F: Fn(TcpStream, &S) + Copy + Send + 'static,
{
    for stream in listener.incoming() {
        if stopping(&shared).load(Ordering::SeqCst) {
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
