//! The write side: authenticate, authorise, load, decide, append.
//!
//! A command is decided only from the log: its target stream and the other streams its rules
//! name ([`domain::required_facts`]) are read from the store (or from this process's memory of
//! it, guarded at append), never from a read model. Roles and
//! scopes are checked here, in the handler, so no route can forget them.

pub mod auth;
mod error;
mod handler;
mod metadata;
pub mod snapshots;
mod stream_cache;
mod stream_locks;
pub mod tokens;

pub use auth::{Principal, Role};
pub use handler::{CommandError, CommandHandler, CommandOutcome, CommandRequest, RecordedRef};
pub use tokens::{TokenError, TokenService};
