//! Loading a stream's state from the log: its newest snapshot plus the events after it, so a
//! long stream costs a few rows, not its whole history.
//!
//! Snapshots are a cache of a fold ([`domain::StreamState`], in shape [`domain::STATE_SCHEMA`]):
//! one that cannot be read is ignored and the stream is folded from its first event. They are
//! saved in the background, off the command's path, whenever a stream has moved
//! [`SNAPSHOT_EVERY`] events past its last one, so a stream's snapshot trails its head by at most
//! about that many events.

use std::sync::Arc;

use domain::{StreamState, STATE_SCHEMA};
use store::{EventStore, RawEvent, Snapshot};

use crate::error::CommandError;

/// How far a stream may move past its snapshot before a new one is saved.
pub const SNAPSHOT_EVERY: i64 = 64;

/// A stream's state as the log has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedState {
    pub state: StreamState,
    /// The stream's version `state` is folded up to: its last event's, 0 when it has none.
    pub version: i64,
    /// The snapshot's version the load started from (0: none).
    pub snapshot_version: i64,
}

/// Loads `stream`'s state from `store`: the newest readable snapshot, then every event after it.
/// A stream with no events loads as its initial state at version 0.
pub async fn load(store: &dyn EventStore, stream: &str) -> Result<LoadedState, CommandError> {
    let initial = StreamState::initial(stream)
        .ok_or_else(|| CommandError::Internal(format!("{stream} is of no known kind")))?;
    let snapshot = store
        .read_snapshot(stream, STATE_SCHEMA)
        .await
        .map_err(CommandError::Store)?;
    let (mut state, snapshot_version) = match snapshot.map(|s| decode(&s)) {
        Some(Ok(decoded)) => decoded,
        Some(Err(reason)) => {
            metrics::counter!("lianxi_snapshots_ignored_total").increment(1);
            tracing::warn!(%stream, %reason, "ignoring an unreadable snapshot; folding the whole stream");
            (initial, 0)
        }
        None => (initial, 0),
    };

    // As text, decoded straight into the domain's types: no generic JSON tree per event, and the
    // metadata (which deciding never needs) is not parsed at all.
    let tail = store
        .read_stream_raw(stream, snapshot_version)
        .await
        .map_err(CommandError::Store)?;
    let mut version = snapshot_version;
    for recorded in &tail {
        if recorded.version != version + 1 {
            return Err(CommandError::Internal(format!(
                "{stream} jumps from version {version} to {} after its snapshot",
                recorded.version
            )));
        }
        state.evolve(&decode_event(recorded)?);
        version = recorded.version;
    }
    Ok(LoadedState {
        state,
        version,
        snapshot_version,
    })
}

/// What `lianxi verify` found in the snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// Snapshots in this build's shape compared with the fold of their stream's events.
    pub checked: u64,
    /// The first that does not match, with why.
    pub first_mismatch: Option<(Snapshot, String)>,
}

/// Compares every snapshot in this build's shape with the fold of its stream's events up to its
/// version: a snapshot is a cache that decisions are made from, so one that differs from the log
/// (changed by hand, or folded by a build whose `evolve` differed without a new
/// [`STATE_SCHEMA`]) must be found, though the log itself is intact.
pub async fn check_all(store: &dyn EventStore) -> Result<SnapshotCheck, CommandError> {
    const PAGE: usize = 100;
    let mut report = SnapshotCheck::default();
    let mut after = String::new();
    loop {
        let page = store
            .snapshots(STATE_SCHEMA, &after, PAGE)
            .await
            .map_err(CommandError::Store)?;
        let Some(last) = page.last() else {
            return Ok(report);
        };
        after = last.stream.clone();
        for snapshot in page {
            report.checked += 1;
            if let Some(reason) = mismatch(store, &snapshot).await? {
                report.first_mismatch = Some((snapshot, reason));
                return Ok(report);
            }
        }
    }
}

/// Why `snapshot` is not the fold of its stream's first `version` events, if it is not.
async fn mismatch(
    store: &dyn EventStore,
    snapshot: &Snapshot,
) -> Result<Option<String>, CommandError> {
    let (state, version) = match decode(snapshot) {
        Ok(decoded) => decoded,
        Err(reason) => return Ok(Some(format!("it does not read back: {reason}"))),
    };
    let Some(mut folded) = StreamState::initial(&snapshot.stream) else {
        return Ok(Some("its stream is of no known kind".to_owned()));
    };
    let events = store
        .read_stream_raw(&snapshot.stream, 0)
        .await
        .map_err(CommandError::Store)?;
    let covered = usize::try_from(version).unwrap_or(usize::MAX);
    if events.len() < covered {
        return Ok(Some(format!(
            "the stream has {} events, the snapshot says {version}",
            events.len()
        )));
    }
    for recorded in &events[..covered] {
        folded.evolve(&decode_event(recorded)?);
    }
    Ok((folded != state)
        .then(|| format!("it differs from the fold of the stream's first {version} events")))
}

/// Whether a stream at `version` should get a new snapshot, its last one being at
/// `snapshot_version`.
pub(crate) fn due(snapshot_version: i64, version: i64) -> bool {
    version - snapshot_version >= SNAPSHOT_EVERY
}

/// Saves `state` as `stream`'s snapshot at `version` now; `true` when saved (`false`: the stream
/// has not reached `version`, or a snapshot as new is there already).
pub async fn save(
    store: &dyn EventStore,
    stream: &str,
    version: i64,
    state: &StreamState,
) -> Result<bool, CommandError> {
    let state = serde_json::to_string(state).map_err(|error| {
        CommandError::Internal(format!("a state that does not serialise: {error}"))
    })?;
    let snapshot = Snapshot {
        stream: stream.to_owned(),
        version,
        schema: STATE_SCHEMA,
        state,
    };
    store
        .save_snapshot(&snapshot)
        .await
        .map_err(CommandError::Store)
}

/// [`save`] in the background, off the command's path. A failure only costs a later load a
/// longer tail, so it is logged and counted, never answered.
pub(crate) fn save_in_background(
    store: &Arc<dyn EventStore>,
    stream: &str,
    version: i64,
    state: &StreamState,
) {
    let (store, stream, state) = (Arc::clone(store), stream.to_owned(), state.clone());
    tokio::spawn(async move {
        let outcome = match save(store.as_ref(), &stream, version, &state).await {
            Ok(true) => "saved",
            Ok(false) => "superseded",
            Err(error) => {
                tracing::warn!(%stream, %error, "saving a snapshot failed; the next load folds a longer tail");
                "failed"
            }
        };
        metrics::counter!("lianxi_snapshots_total", "outcome" => outcome).increment(1);
    });
}

/// A snapshot's state and version, or why it cannot be used.
fn decode(snapshot: &Snapshot) -> Result<(StreamState, i64), String> {
    let state: StreamState = serde_json::from_str(&snapshot.state).map_err(|e| e.to_string())?;
    // A snapshot of another aggregate than the stream's kind is not this stream's.
    if std::mem::discriminant(&state)
        != std::mem::discriminant(&StreamState::initial(&snapshot.stream).ok_or("unknown kind")?)
    {
        return Err("a snapshot of another aggregate".to_owned());
    }
    Ok((state, snapshot.version))
}

/// A stored event as the domain's event, upcast to its current schema.
fn decode_event(recorded: &RawEvent) -> Result<domain::Event, CommandError> {
    domain::upcast::upcast_str(
        &recorded.event_type,
        recorded.schema_version,
        &recorded.data,
    )
    .map_err(|err| {
        CommandError::Internal(format!(
            "event {} at position {} cannot be read: {err}",
            recorded.id, recorded.position
        ))
    })
}
