//! The waypoint behind HBONE, in-process over real mTLS on loopback: a mesh CA, a client with
//! a mesh SVID, the waypoint, and a stand-in node agent in front of hyper backends.

mod binary;
mod identity_files;
mod refusals;
mod routing;
mod support;
