//! The node's connection handling: the accept loop, and each connection served with hyper's
//! HTTP/1 server, over TLS when configured.
//!
//! Outsiders with a socket get nothing lasting:
//! - at most `max_connections` connections are open at once (lowered at start to what the
//!   open-file limit leaves room for), so file descriptors stay bounded whatever the number
//!   of sockets opened against the node;
//! - over the cap, the connection idle the longest (no request in progress: never sent one,
//!   still sending its headers, kept alive between requests, or still in its TLS handshake)
//!   is closed to make room; when every connection is busy, a newcomer gets a 503 with a JSON
//!   error (plain HTTP; over TLS it is closed) and is closed;
//! - a client has `header_read_timeout` to send its first request's headers (from
//!   connecting) and any later request's (from its first byte), `tls_handshake_timeout` for
//!   its handshake, and a kept-alive connection with no request for `idle_timeout` is closed;
//!   a request in progress has the API's serve timeout (a 408).

use crate::config::Limits;
use axum::Router;
use axum::body::{Body, Bytes};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

/// The connection limits of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
}

impl ServeLimits {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_connections: limits.max_connections,
            header_read_timeout: Duration::from_millis(limits.header_read_timeout_ms),
            idle_timeout: Duration::from_millis(limits.idle_timeout_ms),
            tls_handshake_timeout: Duration::from_millis(limits.tls_handshake_timeout_ms),
        }
    }

    /// Lowers `max_connections` to what the process's open-file limit leaves room for, after
    /// raising the soft limit as far as needed and allowed. Everything but client
    /// connections (store, log, the listener, `peers` outgoing connections, refusals in
    /// progress) gets a reserve.
    pub fn fit_open_file_limit(mut self, peers: usize) -> Self {
        let reserve = 48 + 4 * peers + MAX_REFUSALS;
        let wanted = (self.max_connections + reserve) as u64;
        let Some(limit) = raise_open_file_limit(wanted) else {
            return self;
        };
        if limit < wanted {
            let fits = (limit as usize)
                .saturating_sub(reserve)
                .max(MIN_CONNECTIONS);
            tracing::warn!(
                "the open-file limit ({limit}) leaves room for {fits} connections, not \
                 max_connections = {}: serving at most {fits} (raise it with ulimit -n or \
                 LimitNOFILE to serve more)",
                self.max_connections
            );
            self.max_connections = fits;
        }
        self
    }
}

/// Connections served at least, whatever the open-file limit says.
const MIN_CONNECTIONS: usize = 8;
/// 503 refusals being written at once at most (each holds its socket for up to a second);
/// past that, a connection over the cap is closed without one.
const MAX_REFUSALS: usize = 16;
/// How long a newcomer waits for the connection it displaced to close.
const EVICTION_WAIT: Duration = Duration::from_millis(200);
/// At shutdown, requests in progress get this long to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Accept errors (out of file descriptors...) are logged at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The soft open-file limit after raising it towards `wanted` (up to the hard limit).
fn raise_open_file_limit(wanted: u64) -> Option<u64> {
    rlimit::increase_nofile_limit(wanted).ok()
}

/// One connection as the accept loop and its own task see it.
struct ConnState {
    opened: Instant,
    /// Requests in progress: headers read, answer not yet sent in full.
    busy: AtomicUsize,
    /// Requests begun on this connection.
    requests: AtomicU64,
    /// Milliseconds after `opened` of the last start or end of a request.
    last_active_ms: AtomicU64,
    /// Milliseconds after `opened` of the first byte of the next request, or [`NOT_YET`].
    head_started_ms: AtomicU64,
    /// A deadline moved earlier.
    changed: Notify,
    /// Asked to close to make room.
    evict: Notify,
    evicted: AtomicBool,
}

const NOT_YET: u64 = u64::MAX;

impl ConnState {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            busy: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            last_active_ms: AtomicU64::new(0),
            head_started_ms: AtomicU64::new(NOT_YET),
            changed: Notify::new(),
            evict: Notify::new(),
            evicted: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    fn is_idle(&self) -> bool {
        self.busy.load(SeqCst) == 0
    }

    fn last_active(&self) -> Instant {
        self.at(self.last_active_ms.load(SeqCst))
    }

    /// When the connection is closed unless a request starts first (`None` while busy).
    fn deadline(&self, limits: &ServeLimits) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        let head = self.head_started_ms.load(SeqCst);
        Some(if head != NOT_YET {
            self.at(head) + limits.header_read_timeout
        } else if self.requests.load(SeqCst) == 0 {
            self.opened + limits.header_read_timeout
        } else {
            self.last_active() + limits.idle_timeout
        })
    }

    /// Bytes came in: on an idle kept-alive connection, the next request's headers start.
    fn received(&self) {
        if self.is_idle()
            && self.requests.load(SeqCst) > 0
            && self
                .head_started_ms
                .compare_exchange(NOT_YET, self.now_ms(), SeqCst, SeqCst)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }
}

/// A request in progress on a connection, until its answer is sent (or dropped).
struct Busy(Arc<ConnState>);

impl Busy {
    fn start(state: &Arc<ConnState>) -> Self {
        state.busy.fetch_add(1, SeqCst);
        state.requests.fetch_add(1, SeqCst);
        state.head_started_ms.store(NOT_YET, SeqCst);
        state.last_active_ms.store(state.now_ms(), SeqCst);
        Self(Arc::clone(state))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_active_ms.store(self.0.now_ms(), SeqCst);
        self.0.busy.fetch_sub(1, SeqCst);
        self.0.changed.notify_one();
    }
}

/// An answer's body that keeps its request [`Busy`] until it is sent.
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's stream, telling its state when bytes come in.
struct Tracked<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.state.received();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The open connections, by order of arrival.
#[derive(Default)]
struct Registry {
    conns: Mutex<(u64, BTreeMap<u64, Arc<ConnState>>)>,
}

impl Registry {
    fn add(self: &Arc<Self>) -> Registered {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let id = conns.0;
        conns.0 += 1;
        let state = Arc::new(ConnState::new());
        conns.1.insert(id, Arc::clone(&state));
        Registered {
            registry: Arc::clone(self),
            id,
            state,
        }
    }

    fn len(&self) -> usize {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).1.len()
    }

    /// Asks the connection idle the longest to close; false if every one is busy.
    fn evict_idlest(&self) -> bool {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        let victim = conns
            .1
            .values()
            .filter(|c| c.is_idle() && !c.evicted.load(SeqCst))
            .min_by_key(|c| c.last_active());
        match victim {
            Some(victim) => {
                victim.evicted.store(true, SeqCst);
                victim.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// A connection's place in the registry, given up when its task ends.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
    state: Arc<ConnState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut conns = self
            .registry
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        conns.1.remove(&self.id);
    }
}

/// Serves `app` on `listener` (TLS when `tls` is set) until `shutdown` completes; then stops
/// accepting, lets requests in progress finish (for a few seconds) and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS));
    let registry = Arc::new(Registry::default());
    let (stop, stopping) = watch::channel(());
    let mut tasks = tokio::task::JoinSet::new();
    let mut warned_accept: Option<Instant> = None;
    let mut warned_cap: Option<Instant> = None;
    let due = |warned: &mut Option<Instant>| {
        let due = warned.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            *warned = Some(Instant::now());
        }
        due
    };
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if due(&mut warned_accept) {
                        tracing::warn!("accept failed: {e} ({} connections open)", registry.len());
                    }
                    // Out of file descriptors, say: make room, and do not spin.
                    registry.evict_idlest();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let permit = match Arc::clone(&permits).try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) if registry.evict_idlest() => {
                tokio::time::timeout(EVICTION_WAIT, Arc::clone(&permits).acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            if due(&mut warned_cap) {
                tracing::warn!(
                    "{} connections, all busy: refusing new ones (max_connections)",
                    limits.max_connections
                );
            }
            refuse(stream, acceptor.is_some(), &refusals);
            continue;
        };
        let registered = registry.add();
        tasks.spawn(connection(
            stream,
            peer,
            acceptor.clone(),
            app.clone(),
            registered,
            limits,
            permit,
            stopping.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(());
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tasks.shutdown().await;
    }
}

/// The 503 a connection over the cap gets.
fn refusal() -> String {
    let body = r#"{"error":"too many connections: try again later"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Answers a connection over the cap with a 503 and closes it (at once over TLS, or when
/// refusals are already being written).
fn refuse(mut stream: TcpStream, tls: bool, refusals: &Arc<Semaphore>) {
    if tls {
        return;
    }
    let Ok(permit) = Arc::clone(refusals).try_acquire_owned() else {
        return;
    };
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let mut buf = [0u8; 2048];
            // Read what the client sent first: closing on unread bytes is a reset, which
            // can destroy the answer before the client reads it.
            let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
            stream.write_all(refusal().as_bytes()).await?;
            stream.shutdown().await?;
            while stream.read(&mut buf).await? > 0 {}
            Ok::<(), std::io::Error>(())
        })
        .await;
    });
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    registered: Registered,
    limits: ServeLimits,
    _permit: OwnedSemaphorePermit,
    mut stopping: watch::Receiver<()>,
) {
    let state = Arc::clone(&registered.state);
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => {
            let io = Tracked {
                inner: stream,
                state: Arc::clone(&state),
            };
            serve_http(io, app, state, limits, stopping).await;
        }
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream));
            let tls = tokio::select! {
                done = handshake => match done {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!("TLS handshake with {peer} failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake with {peer} timed out");
                        return;
                    }
                },
                () = state.evict.notified() => return,
                _ = stopping.changed() => return,
            };
            let io = Tracked {
                inner: tls,
                state: Arc::clone(&state),
            };
            serve_http(io, app, state, limits, stopping).await;
        }
    }
    drop(registered);
}

/// HTTP/1 on one connection, closed when idle past its deadline or evicted.
async fn serve_http<S>(
    io: Tracked<S>,
    app: Router,
    state: Arc<ConnState>,
    limits: ServeLimits,
    mut stopping: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let state = Arc::clone(&state);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::start(&state);
            let app = app.clone();
            Box::pin(async move {
                let response = match app.oneshot(request).await {
                    Ok(response) => response,
                    Err(infallible) => match infallible {},
                };
                Ok::<_, std::convert::Infallible>(
                    response.map(|body| Body::new(TrackedBody { body, _busy: busy })),
                )
            })
        })
    };
    let mut connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service);
    let mut draining = false;
    loop {
        let wake = state
            .deadline(&limits)
            .unwrap_or_else(|| Instant::now() + limits.idle_timeout);
        tokio::select! {
            served = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => {
                if let Err(e) = served {
                    tracing::debug!("connection ended: {e}");
                }
                linger(connection.into_parts().io.into_inner()).await;
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                if state.deadline(&limits).is_some_and(|d| d <= Instant::now()) {
                    return;
                }
            }
            () = state.changed.notified() => {}
            () = state.evict.notified() => {
                if state.is_idle() {
                    return;
                }
                state.evicted.store(false, SeqCst);
            }
            _ = stopping.changed(), if !draining => {
                draining = true;
                Pin::new(&mut connection).graceful_shutdown();
            }
        }
    }
}

/// How long, and how much, a closing connection is still read from.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;

/// Closes a connection whose last answer is sent: the write side first, then what the
/// client still sends is read and dropped for a moment. Closing with unread bytes (a body
/// over the limit, refused before it was read) would be a reset, which can destroy the
/// answer before the client reads it.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let _ = tokio::time::timeout(LINGER, async {
        io.shutdown().await?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut drained = 0;
        while drained < LINGER_BYTES {
            match io.read(&mut buf).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ServeLimits {
        ServeLimits {
            max_connections: 4,
            header_read_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn deadlines_follow_the_requests() {
        let limits = limits();
        let state = Arc::new(ConnState::new());
        // Before any request: the header timeout from connecting, bytes or not.
        let first = Some(state.opened + limits.header_read_timeout);
        assert_eq!(state.deadline(&limits), first);
        state.received();
        assert_eq!(state.deadline(&limits), first);
        // While a request is served: none (its body coming in changes nothing).
        let busy = Busy::start(&state);
        assert_eq!(state.deadline(&limits), None);
        state.received();
        drop(busy);
        // Kept alive: the idle timeout from the answer.
        state.last_active_ms.store(3_000, SeqCst);
        let answered = state.opened + Duration::from_secs(3);
        assert_eq!(
            state.deadline(&limits),
            Some(answered + limits.idle_timeout)
        );
        // The next request's first byte: its headers get the header timeout from then.
        state.received();
        let head = state.at(state.head_started_ms.load(SeqCst));
        assert_eq!(
            state.deadline(&limits),
            Some(head + limits.header_read_timeout)
        );
        state.head_started_ms.store(20_000, SeqCst);
        state.received();
        assert_eq!(
            state.head_started_ms.load(SeqCst),
            20_000,
            "moved by later bytes"
        );
        // The request starts: no deadline; it ends: idle again, from then.
        let busy = Busy::start(&state);
        assert_eq!(state.deadline(&limits), None);
        drop(busy);
        assert_eq!(state.head_started_ms.load(SeqCst), NOT_YET);
        assert_eq!(
            state.deadline(&limits),
            Some(state.last_active() + limits.idle_timeout)
        );
    }

    #[test]
    fn the_connection_idle_the_longest_is_evicted_and_busy_ones_never() {
        let registry = Arc::new(Registry::default());
        let a = registry.add();
        let b = registry.add();
        let c = registry.add();
        // a has been idle the longest, but has a request in progress.
        let busy = Busy::start(&a.state);
        a.state.last_active_ms.store(0, SeqCst);
        b.state.last_active_ms.store(1_000, SeqCst);
        c.state.last_active_ms.store(2_000, SeqCst);
        assert!(registry.evict_idlest());
        assert!(b.state.evicted.load(SeqCst));
        assert!(registry.evict_idlest());
        assert!(c.state.evicted.load(SeqCst));
        assert!(!registry.evict_idlest(), "only a busy one is left");
        assert!(!a.state.evicted.load(SeqCst));
        drop(busy);
        assert!(registry.evict_idlest());
        assert_eq!(registry.len(), 3);
        drop((b, c));
        assert_eq!(registry.len(), 1);
    }
}
