//! A webhook target that accepts connections and never answers: a call to it stays in flight
//! until the caller gives up or dies.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};

/// Starts the target; returns its port, its connection count and a signal per accepted
/// connection.
pub(crate) fn hanging_hook() -> (u16, Arc<AtomicUsize>, mpsc::Receiver<()>) {
    let hook = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = hook.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let (accepted_tx, accepted_rx) = mpsc::channel();
    {
        let connections = connections.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in hook.incoming().map_while(Result::ok) {
                connections.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
                let _ = accepted_tx.send(());
            }
        });
    }
    (port, connections, accepted_rx)
}
