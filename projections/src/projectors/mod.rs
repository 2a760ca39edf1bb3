//! The registered projectors. Adding a read model is one module here plus one line in
//! [`all`].

pub mod board;

use crate::Projector;

/// Every projector the server runs, freshly constructed.
pub fn all() -> Vec<Box<dyn Projector>> {
    vec![Box::new(board::BoardProjector::default())]
}
