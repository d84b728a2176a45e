//! The deployer's decisions case by case, and its requests to an in-process API server.

mod apply;
mod render;
mod status;
