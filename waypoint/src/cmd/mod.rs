//! The subcommands, and the admin listeners they share.

pub mod admin;
pub mod local;
pub mod run;
