//! Generates the CA protocol's gRPC code (proto/ca.proto) with a vendored protoc.

fn main() {}
