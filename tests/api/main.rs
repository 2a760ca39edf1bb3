//! End-to-end tests of the `lianxi` binary: each test starts the real server on port 0 over a
//! fresh data directory (see `helpers::spawn_app`) and talks to it over TCP, as apps do.

mod auth;
mod bad_input;
mod commands;
mod concurrency;
mod crash;
mod helpers;
mod idempotency;
mod lifecycle;
mod operations;
