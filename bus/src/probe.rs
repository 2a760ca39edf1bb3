//! Whether a process reaches NATS now, for its `/readyz`: a connection of its own to the same
//! server, which the client keeps re-establishing, so the answer follows the server's outages.

use async_nats::connection::State;

use crate::BusError;

/// A connection kept only to say whether NATS is reachable.
#[derive(Clone)]
pub struct Probe {
    client: async_nats::Client,
}

impl Probe {
    /// Opens the probe's connection to `nats_url` (in the background: a server that is down at
    /// start only makes [`Probe::connected`] false until it is up).
    pub async fn open(nats_url: &str) -> Result<Probe, BusError> {
        Ok(Probe {
            client: crate::connect(nats_url).await?,
        })
    }

    /// Whether the connection is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == State::Connected
    }
}
