//! The HTTP routes, one module per family of paths.

pub mod commands;
pub mod events;
pub mod health;
pub mod reads;
pub mod tokens;
