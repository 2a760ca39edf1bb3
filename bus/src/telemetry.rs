//! The bus's metrics, named in one place.
//!
//! - `lianxi_relay_active`: 1 while this process's relay holds the leader lock, else 0;
//! - `lianxi_relay_position`: the last log position the relay saw acknowledged by JetStream;
//! - `lianxi_relay_lag_events`: the log's head (as this process knows it) minus that position;
//! - `lianxi_relay_published_total`: events acknowledged by JetStream (a duplicate counts: it
//!   is in the stream);
//! - `lianxi_relay_publish_errors_total`: failed publishes and stream requests (each one makes
//!   the relay back off and find its place in the stream again);
//! - `lianxi_bus_redeliveries_total`: deliveries to a projector process that JetStream had
//!   delivered before (not acknowledged in time, or the consumer restarted);
//! - `lianxi_bus_source_feed_events_total` and `lianxi_bus_source_log_events_total`: events a
//!   projector process took from the feed, and from the PostgreSQL log because the feed lacked
//!   them or lagged.
//!
//! Each process exports its counters from the start, at 0, so a dashboard sees a flat line
//! rather than no series until the first event.

use store::Position;

/// Exports a relay's series before it does anything.
pub(crate) fn register_relay() {
    relay_active(false);
    metrics::counter!("lianxi_relay_published_total").absolute(0);
    metrics::counter!("lianxi_relay_publish_errors_total").absolute(0);
}

/// Exports a projector process's feed series before it reads anything.
pub(crate) fn register_feed() {
    metrics::counter!("lianxi_bus_redeliveries_total").absolute(0);
    metrics::counter!("lianxi_bus_source_feed_events_total").absolute(0);
    metrics::counter!("lianxi_bus_source_log_events_total").absolute(0);
}

/// Events a projector process took from the feed.
pub(crate) fn from_feed(events: usize) {
    if events > 0 {
        metrics::counter!("lianxi_bus_source_feed_events_total").increment(events as u64);
    }
}

/// Events a projector process read from the log instead.
pub(crate) fn from_log(events: usize) {
    if events > 0 {
        metrics::counter!("lianxi_bus_source_log_events_total").increment(events as u64);
    }
}

pub(crate) fn relay_active(active: bool) {
    metrics::gauge!("lianxi_relay_active").set(if active { 1.0 } else { 0.0 });
}

/// Records the relay's published position against the head it knows.
pub(crate) fn relay_position(position: Position, head: Position) {
    metrics::gauge!("lianxi_relay_position").set(position as f64);
    metrics::gauge!("lianxi_relay_lag_events").set(head.saturating_sub(position).max(0) as f64);
}

pub(crate) fn relay_published(events: u64) {
    metrics::counter!("lianxi_relay_published_total").increment(events);
}

pub(crate) fn relay_publish_error() {
    metrics::counter!("lianxi_relay_publish_errors_total").increment(1);
}

pub(crate) fn redelivered(deliveries: u64) {
    if deliveries > 0 {
        metrics::counter!("lianxi_bus_redeliveries_total").increment(deliveries);
    }
}
