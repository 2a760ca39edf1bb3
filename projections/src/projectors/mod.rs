//! The registered projectors. Adding a read model is one module here plus one line in
//! [`all`].

pub mod board;
pub mod district_stats;
pub mod items;
pub mod trace;
pub mod unit_profile;

use crate::Projector;

/// Every projector the server runs, freshly constructed.
pub fn all() -> Vec<Box<dyn Projector>> {
    vec![
        Box::new(board::BoardProjector::default()),
        Box::new(unit_profile::UnitProfileProjector::default()),
        Box::new(items::ItemsProjector::default()),
        Box::new(trace::TraceProjector::default()),
        Box::new(district_stats::DistrictStatsProjector::default()),
    ]
}
