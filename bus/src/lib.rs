//! NATS JetStream between the log and projector processes: the relay that publishes committed events, and the feed projector processes consume.
//!
//! In the distributed mode the PostgreSQL log stays the truth; JetStream is a copy of it in log
//! order that projector processes on other machines can follow without polling the database.
//! One [`Relay`] is active per database (a PostgreSQL advisory lock; others stand by) and
//! publishes each committed event once, in position order ([`relay`]). A projector process
//! reads them through a durable consumer ([`Feed`]), at least once and in order, skipping what
//! its checkpoint already covers ([`feed`]). The wire format is in [`message`]; a throwaway
//! nats-server for tests and benchmarks in [`throwaway_nats`].

mod error;
pub mod feed;
pub mod message;
mod probe;
pub mod relay;
pub mod source;
mod telemetry;
pub mod throwaway_nats;

use std::time::Duration;

pub use error::BusError;
pub use feed::{Delivery, Feed};
pub use message::StreamSettings;
pub use probe::Probe;
pub use relay::{LockKey, Relay, RelayConfig, RelayHandle, RelayStatus, RELAY_LOCK_KEY};
pub use source::FeedSource;

/// The longest pause between two attempts to reach a NATS server that went away.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A client of the NATS server at `url` that keeps trying to (re)connect for ever: an outage
/// shows as failing requests, never as a client given up on. Reconnections come quickly (at most
/// [`MAX_RECONNECT_DELAY`] apart) so a restarted server is used again within a second or so.
pub(crate) async fn connect(url: &str) -> Result<async_nats::Client, BusError> {
    async_nats::ConnectOptions::new()
        .name("lianxi")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(100)
                .saturating_mul(u32::try_from(attempts).unwrap_or(u32::MAX))
                .min(MAX_RECONNECT_DELAY)
        })
        .connect(url)
        .await
        .map_err(|error| BusError::Config(format!("NATS url {url:?}: {error}")))
}
