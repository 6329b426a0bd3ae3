//! Runs the built `envid` binary and checks stdout, stderr and exit codes.

pub(crate) mod common;
mod serve_limits;
mod service;
mod where_am_i;
