//! The accept loop. Connections are served by hyper directly (not `axum::serve`) so that a fault
//! can drop the very connection a request came on: with a reset (RST) before the response, or a
//! plain close after the handler has committed (the lost response).

use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::faults::lock;

/// How a fault ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropMode {
    /// RST: `SO_LINGER` 0, then close.
    Reset,
    /// FIN: shut the socket down without answering.
    Close,
}

/// Handed to each request (as an extension) so the gate can drop its connection.
#[derive(Clone)]
pub(crate) struct ConnControl {
    tx: Arc<Mutex<Option<oneshot::Sender<DropMode>>>>,
}

impl ConnControl {
    /// Asks the connection task to drop the connection.
    pub(crate) fn kill(&self, mode: DropMode) {
        if let Some(tx) = lock(&self.tx).take() {
            // The task is gone only if the connection already ended.
            let _ = tx.send(mode);
        }
    }
}

/// How long open connections get to finish after shutdown is requested.
const DRAIN: Duration = Duration::from_secs(5);

/// Accepts and serves connections until `shutdown` turns true, then drains them.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone(), shutdown.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "sandbox accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = shutdown.changed() => break,
        }
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let drained = tokio::time::timeout(DRAIN, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
}

async fn serve_connection(stream: TcpStream, router: Router, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    // A second descriptor on the socket lets a fault decide how it closes while hyper owns it.
    let (stream, shadow) = match stream.into_std().and_then(|s| {
        let shadow = s.try_clone()?;
        Ok((TcpStream::from_std(s)?, shadow))
    }) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::warn!(error = %e, "sandbox could not set up a connection");
            return;
        }
    };
    let (tx, mut killed) = oneshot::channel();
    let control = ConnControl {
        tx: Arc::new(Mutex::new(Some(tx))),
    };
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        req.extensions_mut().insert(control.clone());
        router.clone().oneshot(req)
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "sandbox connection ended with an error");
                }
                return;
            }
            mode = &mut killed => {
                match mode {
                    Ok(DropMode::Reset) => {
                        let _ = socket2::SockRef::from(&shadow).set_linger(Some(Duration::ZERO));
                    }
                    Ok(DropMode::Close) => {
                        let _ = shadow.shutdown(Shutdown::Both);
                    }
                    Err(_) => {}
                }
                // Returning drops the connection (and its in-flight handler) and both descriptors.
                return;
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
