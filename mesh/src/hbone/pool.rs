//! The HBONE connection pool: HTTP/2 connections to peer agents, shared by CONNECT streams.
//!
//! One pool per agent. Streams for the same [`PoolKey`] share a connection while it has
//! stream capacity; a new connection is dialled only when all are full, and one dial at a
//! time per key, so a burst of streams does not open a burst of connections.
//! # Invariants
//! - a connection carries at most `max_streams_per_connection` streams at once;
//! - a connection with no stream for `idle_timeout` is closed and forgotten;
//! - a connection whose HTTP/2 task ended (PING timeout, GOAWAY, reset) is never picked again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use rustls::sign::CertifiedKey;
use rustls::RootCertStore;
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info};

use super::client::{
    dial, open_stream, HboneStream, Http2Connection, Http2Sender, OpenError, TunnelError,
};
use super::keepalive;
use super::stats::{bump, PoolStats};
use crate::identity::SpiffeId;

/// Which connections a stream may share: same source identity, same peer agent, same
/// identity expected of the peer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The source workload, whose certificate the connection presents.
    pub source: SpiffeId,
    /// The destination node's agent (its HBONE port).
    pub dst_node: SocketAddr,
    /// The identity the peer must present (the destination workload, or its waypoint).
    pub dst_identity: SpiffeId,
}

/// The certificate (SVID) of a source identity, or `None` if the agent holds none yet.
pub type CertSource = Arc<dyn Fn(&SpiffeId) -> Option<Arc<CertifiedKey>> + Send + Sync>;

/// Tunables of the pool.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Streams one connection carries at once before another connection is opened.
    pub max_streams_per_connection: usize,
    /// A connection without streams for this long is closed.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub handshake_timeout: Duration,
    /// HTTP/2 PING interval (also while idle); no answer within `keepalive_timeout` closes it.
    pub keepalive_interval: Option<Duration>,
    pub keepalive_timeout: Duration,
    /// HTTP/2 flow-control windows: bytes in flight per stream and per connection.
    pub stream_window: u32,
    pub connection_window: u32,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_streams_per_connection: 100,
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(5),
            keepalive_interval: Some(Duration::from_secs(20)),
            keepalive_timeout: Duration::from_secs(10),
            stream_window: 4 * 1024 * 1024,
            connection_window: 16 * 1024 * 1024,
        }
    }
}

/// Pooled HBONE connections (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    settings: PoolSettings,
    roots: Arc<RootCertStore>,
    certs: CertSource,
    keys: Mutex<HashMap<PoolKey, KeyConns>>,
    stats: Arc<PoolStats>,
    next_id: AtomicU64,
}

#[derive(Default)]
struct KeyConns {
    conns: Vec<Arc<PooledConn>>,
    /// Held while dialling, so that only one new connection per key is in progress.
    dial: Arc<tokio::sync::Mutex<()>>,
}

struct PooledConn {
    id: u64,
    key: PoolKey,
    sender: Http2Sender,
    state: Mutex<ConnState>,
    /// Signalled when the last stream ends (idle clock starts).
    idle: Notify,
}

struct ConnState {
    active: usize,
    idle_since: Instant,
    retired: bool,
}

/// A stream's claim on a pooled connection; released when the stream is dropped.
pub(super) struct StreamSlot {
    conn: Arc<PooledConn>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut state = lock(&self.conn.state);
        state.active = state.active.saturating_sub(1);
        if state.active == 0 {
            state.idle_since = Instant::now();
            self.conn.idle.notify_one();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Pool {
    /// `roots` is the mesh trust anchor; `certs` gives each source identity's SVID.
    pub fn new(settings: PoolSettings, roots: Arc<RootCertStore>, certs: CertSource) -> Self {
        Pool {
            inner: Arc::new(Inner {
                settings,
                roots,
                certs,
                keys: Mutex::new(HashMap::new()),
                stats: Arc::new(PoolStats::default()),
                next_id: AtomicU64::new(0),
            }),
        }
    }

    pub fn stats(&self) -> Arc<PoolStats> {
        self.inner.stats.clone()
    }

    /// Connections currently pooled (all keys).
    pub fn open_connections(&self) -> usize {
        lock(&self.inner.keys).values().map(|k| k.conns.len()).sum()
    }

    /// Tunnels a connection to `target` through `key.dst_node`: a `CONNECT target` stream on a
    /// pooled connection (dialled if none has capacity). `forwarded_for` is the original
    /// client; `baggage` describes the source workload (empty: not sent).
    pub async fn connect(
        &self,
        key: PoolKey,
        target: SocketAddr,
        forwarded_for: SocketAddr,
        baggage: String,
    ) -> Result<HboneStream, TunnelError> {
        let mut retried = false;
        loop {
            let slot = self.slot(&key).await?;
            let sender = slot.conn.sender.clone();
            match open_stream(sender, key.dst_node, target, forwarded_for, &baggage).await {
                Ok(io) => {
                    bump(&self.inner.stats.streams_opened);
                    return Ok(HboneStream { io, _slot: slot });
                }
                // The connection went away before the peer processed our request (GOAWAY
                // race): one more try on another connection is safe.
                Err(OpenError {
                    unprocessed: true, ..
                }) if !retried => {
                    debug!(
                        id = slot.conn.id,
                        "HBONE: pooled connection closed under a new stream; retrying"
                    );
                    lock(&slot.conn.state).retired = true;
                    retried = true;
                }
                Err(OpenError { error, .. }) => {
                    bump(&self.inner.stats.streams_failed);
                    return Err(error);
                }
            }
        }
    }

    /// A stream slot on a connection for `key`, dialling one if all are full.
    async fn slot(&self, key: &PoolKey) -> Result<StreamSlot, TunnelError> {
        if let Some(slot) = self.reserve(key) {
            return Ok(slot);
        }
        let dial_lock = lock(&self.inner.keys)
            .entry(key.clone())
            .or_default()
            .dial
            .clone();
        let _dialling = dial_lock.lock().await;
        // Someone else may have dialled while we waited.
        if let Some(slot) = self.reserve(key) {
            return Ok(slot);
        }
        let conn = self.dial(key).await?;
        let slot = StreamSlot { conn: conn.clone() };
        lock(&self.inner.keys)
            .entry(key.clone())
            .or_default()
            .conns
            .push(conn);
        Ok(slot)
    }

    /// Claims a stream on the least busy usable connection of `key`.
    fn reserve(&self, key: &PoolKey) -> Option<StreamSlot> {
        let max = self.inner.settings.max_streams_per_connection.max(1);
        let keys = lock(&self.inner.keys);
        let conns = &keys.get(key)?.conns;
        let mut best: Option<(&Arc<PooledConn>, MutexGuard<'_, ConnState>)> = None;
        for conn in conns {
            let state = lock(&conn.state);
            if state.retired || state.active >= max {
                continue;
            }
            if best.as_ref().is_none_or(|(_, b)| state.active < b.active) {
                best = Some((conn, state));
            }
        }
        let (conn, mut state) = best?;
        state.active += 1;
        Some(StreamSlot { conn: conn.clone() })
    }

    async fn dial(&self, key: &PoolKey) -> Result<Arc<PooledConn>, TunnelError> {
        let inner = &self.inner;
        let own = (inner.certs)(&key.source).ok_or_else(|| TunnelError::NoCertificate {
            source_id: key.source.clone(),
        })?;
        let (sender, connection) = match dial(key, own, inner.roots.clone(), &inner.settings).await
        {
            Ok(pair) => pair,
            Err(err) => {
                bump(&inner.stats.connect_failures);
                return Err(err);
            }
        };
        bump(&inner.stats.connections_opened);
        let id = inner
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        info!(id, source = %key.source, peer = %key.dst_node, identity = %key.dst_identity, "HBONE: pooled connection opened");
        let conn = Arc::new(PooledConn {
            id,
            key: key.clone(),
            sender,
            // Born with the stream of the caller that dialled it.
            state: Mutex::new(ConnState {
                active: 1,
                idle_since: Instant::now(),
                retired: false,
            }),
            idle: Notify::new(),
        });
        tokio::spawn(drive(Arc::downgrade(inner), conn.clone(), connection));
        Ok(conn)
    }
}

/// Runs one connection's HTTP/2 task and retires the connection when idle for too long, when
/// its peer stops answering PINGs, or when the task ends.
async fn drive(pool: Weak<Inner>, conn: Arc<PooledConn>, mut connection: Http2Connection) {
    let silent = match pool.upgrade() {
        Some(pool) => keepalive::until_silent(
            connection.ping_pong(),
            pool.settings.keepalive_interval,
            pool.settings.keepalive_timeout,
        ),
        None => return,
    };
    let mut silent = std::pin::pin!(silent);
    let mut connection = std::pin::pin!(connection);
    let ended_by_peer = loop {
        let Some(idle_timeout) = pool.upgrade().map(|p| p.settings.idle_timeout) else {
            break false;
        };
        let deadline = {
            let state = lock(&conn.state);
            (state.active == 0).then_some(state.idle_since + idle_timeout)
        };
        let expiry = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut connection => {
                if let Err(err) = result {
                    debug!(id = conn.id, error = %err, "HBONE: pooled connection failed");
                }
                break true;
            }
            () = &mut silent => {
                debug!(id = conn.id, "HBONE: pooled connection's peer stopped answering PINGs");
                // Dropping the connection fails its streams.
                lock(&conn.state).retired = true;
                break true;
            }
            () = conn.idle.notified() => {}
            () = expiry => {
                if retire_if_idle(&pool, &conn, idle_timeout) {
                    break false;
                }
            }
        }
    };
    if let Some(pool) = pool.upgrade() {
        forget(&pool, &conn);
        bump(&pool.stats.connections_closed);
    }
    let why = if ended_by_peer { "ended" } else { "idle" };
    info!(id = conn.id, peer = %conn.key.dst_node, why, "HBONE: pooled connection closed");
    // Dropping our sender lets h2 close the connection cleanly (GOAWAY); give it a moment.
    drop(conn);
    if !ended_by_peer {
        let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
    }
}

/// Marks `conn` retired if it is still idle past the timeout (checked under the pool lock so
/// that no stream can claim it meanwhile).
fn retire_if_idle(pool: &Weak<Inner>, conn: &Arc<PooledConn>, idle_timeout: Duration) -> bool {
    let Some(pool) = pool.upgrade() else {
        return true;
    };
    let _keys = lock(&pool.keys);
    let mut state = lock(&conn.state);
    if state.active == 0 && state.idle_since + idle_timeout <= Instant::now() {
        state.retired = true;
        return true;
    }
    false
}

fn forget(pool: &Inner, conn: &Arc<PooledConn>) {
    let mut keys = lock(&pool.keys);
    lock(&conn.state).retired = true;
    if let Some(entry) = keys.get_mut(&conn.key) {
        entry.conns.retain(|c| !Arc::ptr_eq(c, conn));
        if entry.conns.is_empty() && Arc::strong_count(&entry.dial) == 1 {
            keys.remove(&conn.key);
        }
    }
}
