//! End-to-end tests of the `lianxi` binary: each test starts the real server on port 0 over a
//! fresh data directory (see `helpers::spawn_app`) and talks to it over TCP, as apps do.
//!
//! The suite runs once per backend: on SQLite by default, on PostgreSQL with
//! `LIANXI_TEST_BACKEND=postgres` (`scripts/test` does both). Tests of what only one backend has
//! say so: `spawn_app_sqlite` for the file on disk, `postgres.rs` for a database server that
//! goes away and comes back.

mod auth;
mod bad_input;
mod commands;
mod concurrency;
mod crash;
mod demo;
mod deploy_local;
mod distributed;
mod helpers;
mod idempotency;
mod items;
mod lifecycle;
mod live;
mod operations;
mod postgres;
mod projection_crash;
mod projections_cli;
mod read_your_writes;
mod relay;
mod replay;
mod stats;
mod trace;
