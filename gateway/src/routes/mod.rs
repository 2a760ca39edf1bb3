//! The HTTP routes, one module per family of paths.

pub mod commands;
pub mod events;
pub mod health;
pub mod items;
pub mod live;
pub mod reads;
pub mod rebuild;
pub mod stats;
pub mod tokens;
pub mod trace;
