//! HBONE: TCP connections carried as HTTP/2 CONNECT streams over mutual TLS, port 15008.
