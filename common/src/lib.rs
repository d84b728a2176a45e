//! Types shared by Ambit's kernel programs and its user space: one definition each.
//!
//! Everything here is `#[repr(C)]` and laid out without implicit padding, because aya's
//! `Pod` reads and writes raw bytes. `layout_tests` pins every size.
#![no_std]

pub mod counters;
pub mod maps;
pub mod redirect;

pub use counters::Counter;
pub use redirect::{EnrolledNetns, IpWords, OrigDst, RedirectConfig, SockKey};

#[cfg(test)]
mod layout_tests;
