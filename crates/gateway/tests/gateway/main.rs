//! The gateway end to end: the official MCP SDK (rmcp) as the agent and as
//! the upstream, Warden in the middle on real sockets and a real SQLite file.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test code"
)]

mod harness;

mod admin;
mod approvals;
mod auth;
mod bad_input;
mod browser;
mod console;
mod context;
mod enforcement;
mod explain;
mod fail_closed;
mod lifecycle;
mod mtls;
mod secrets;
mod sinks;
mod tenants;
