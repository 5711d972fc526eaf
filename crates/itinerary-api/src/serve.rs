//! The HTTP server itself: axum's router behind hyper's HTTP/1 with the limits a public
//! service needs, which `axum::serve` does not set. A client that opens connections and sends
//! nothing, or half a request line (slowloris), used to hold each for as long as it liked, and
//! two such clients took every file descriptor.
//!
//! - Headers must arrive within `header_read_timeout` of the connection opening or of the
//!   previous answer (hyper runs the same timer while a kept-alive connection waits for its next
//!   request, so it is the idle timeout too).
//! - At most `max_connections` connections at once, and at most `per_client` from one address;
//!   a connection beyond either is closed at once, so one client cannot crowd out the others.
//! - On shutdown, no new connections; requests in flight finish, then each connection closes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// What one server allows (`[server]` settings).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// None: no limit (what `axum::serve` did).
    pub header_read_timeout: Option<Duration>,
    /// 0: no limit.
    pub max_connections: usize,
    /// 0: no limit.
    pub per_client: usize,
}

/// Open connections, by client address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// A connection's place in `Open`, given back when it closes.
struct Slot {
    open: Arc<Mutex<Open>>,
    client: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut o) = self.open.lock() {
            o.total = o.total.saturating_sub(1);
            if let Some(n) = o.by_client.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    o.by_client.remove(&self.client);
                }
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets requests in flight finish.
/// Each request carries `ConnectInfo<SocketAddr>`, the client's address.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let open = Arc::new(Mutex::new(Open::default()));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new());
    builder.header_read_timeout(limits.header_read_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(slot) = admit(&open, remote.ip(), limits) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(ConnectInfo(remote))));
        let conn = builder.serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Requests in flight get this long; one stuck on the database must not keep the process
    // from stopping (a supervisor would kill it without a word).
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!(grace_s = SHUTDOWN_GRACE.as_secs(), "requests still in flight at the end of the shutdown grace; stopping anyway");
    }
    Ok(())
}

/// How long requests in flight may take to finish once shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

fn admit(open: &Arc<Mutex<Open>>, client: IpAddr, limits: Limits) -> Option<Slot> {
    let mut o = open.lock().ok()?;
    let mine = o.by_client.get(&client).copied().unwrap_or(0);
    if (limits.max_connections > 0 && o.total >= limits.max_connections) || (limits.per_client > 0 && mine >= limits.per_client) {
        tracing::debug!(%client, open = o.total, from_client = mine, "connection refused: too many open");
        return None;
    }
    o.total += 1;
    *o.by_client.entry(client).or_insert(0) += 1;
    Some(Slot { open: open.clone(), client })
}

/// The client's address, for handlers and middleware.
pub fn client(extensions: &axum::http::Extensions) -> Option<SocketAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}
