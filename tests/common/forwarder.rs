//! A TCP forwarder on 127.0.0.1 to whichever SQL Server peer is current: the watermark's scope
//! names the port, so every run of a test must reach Sage at the same one, even after the peer
//! is restarted on changed data.

use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

/// A TCP forwarder on a fixed port to whichever peer is current.
pub struct Forwarder {
    pub port: u16,
    pub upstream: Arc<AtomicU16>,
}

impl Forwarder {
    pub fn start(upstream: u16) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
        let port = listener.local_addr().expect("addr").port();
        let up = Arc::new(AtomicU16::new(upstream));
        let current = up.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", current.load(Ordering::SeqCst)))
                else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                };
                pipe(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                pipe(server, client);
            }
        });
        Forwarder { port, upstream: up }
    }
}
