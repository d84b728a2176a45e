//! HBONE: TCP connections carried as HTTP/2 CONNECT streams over mutual TLS, port 15008.
//!
//! Wire-compatible with Istio's HBONE, so an Istio ztunnel can be either peer: one
//! `CONNECT <ip>:<port>` stream per carried connection, `forwarded` and `baggage` headers
//! describing the source, 200 only once the destination accepted the connection, then raw
//! bytes both ways. The source side keeps a [`Pool`] of HTTP/2 connections per
//! (source identity, destination node, destination identity); the destination side runs an
//! [`HboneServer`] that asks an [`Inbound`] decision where (and whether) to deliver.
//!
//! # Interoperability
//! The server picks its certificate by the SNI Ambit clients send ([`crate::tls::sni_for`]).
//! A peer that sends no SNI (e.g. a client naming the server by IP) gets no certificate and
//! fails the handshake; serving such peers needs a certificate chosen by destination address.

mod client;
mod headers;
mod keepalive;
mod pool;
mod relay;
mod server;
mod socket_relay;
mod stats;
mod stream;
#[cfg(test)]
mod tests;

pub use client::{HboneStream, TunnelError};
pub use headers::{forwarded_for, parse_forwarded_for, BAGGAGE, FORWARDED};
pub use pool::{CertSource, Pool, PoolKey, PoolSettings};
pub use relay::{CountedCaller, TunnelBytes, TunnelStream, Upstream};
pub use server::{ConnectRequest, HboneServer, Inbound, Refusal, ServerSettings};
pub use stats::{PoolStats, ServerStats};
pub use stream::H2Stream;

/// The HBONE port of node agents and waypoints.
pub const HBONE_PORT: u16 = 15008;

/// The largest HTTP/2 frame we accept: bulk streams move in fewer, larger DATA frames.
pub(crate) const MAX_FRAME_SIZE: u32 = 1024 * 1024;

/// Bytes read from the socket at once under TLS. rustls asks for 4 KiB at a time; without a
/// buffer underneath, each of those would be a read(2) of its own.
pub(crate) const TLS_READ_BUFFER: usize = 64 * 1024;

/// DATA bytes one stream may queue in HTTP/2 before its writes wait for the socket.
pub(crate) const MAX_SEND_BUFFER: usize = 1024 * 1024;
