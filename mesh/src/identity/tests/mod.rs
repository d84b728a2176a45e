//! Tests of identities, by topic: the CA's signing, node authorization, the gRPC service over
//! mTLS, and rotation.
