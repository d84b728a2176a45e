//! Tests of the file source, by topic: parsing and checking a document, following the file.

mod file;
mod gateway_api;
mod watch;

/// The README's example document: a namespace in the mesh, one not, a pod opted out.
const SHOP: &str = include_str!("../../../testdata/shop.yaml");
