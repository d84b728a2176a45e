//! rustls configurations for mesh mTLS: TLS 1.3, ALPN h2, SPIFFE identities checked.
