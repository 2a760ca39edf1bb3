//! The registered projectors.
