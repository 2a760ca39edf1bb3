//! Stopping on SIGTERM or Ctrl-C. The handlers are installed just before the server says it
//! listens (`listen` in `main.rs`), not when the serving loop first waits: a signal in between
//! would otherwise meet the default action and kill the process instead of draining it. Before
//! that line, while the process starts, the default action stands: nothing is in flight yet,
//! and a start waiting on PostgreSQL or NATS must still stop at once.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGTERM and SIGINT, listened for from the moment [`ShutdownSignal::install`] returns.
pub struct ShutdownSignal {
    terminate: Signal,
    interrupt: Signal,
}

impl ShutdownSignal {
    /// Installs the handlers now; a signal delivered before [`ShutdownSignal::received`] is first
    /// polled is kept, not lost.
    pub fn install() -> std::io::Result<ShutdownSignal> {
        Ok(ShutdownSignal {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Resolves on the first SIGTERM or Ctrl-C since [`ShutdownSignal::install`].
    pub async fn received(mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {},
            _ = self.interrupt.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
