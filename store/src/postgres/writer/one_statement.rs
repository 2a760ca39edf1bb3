//! Batches decided on the stream heads this process knows and written in one statement
//! (`lianxi_append_batch`), its own transaction: one round trip instead of four.

use std::collections::HashMap;

use chrono::Utc;
use sqlx::postgres::PgPool;

use super::columns::{bind_batch, columns};
use super::{place, Committed};
use crate::hash::to_stored_precision;
use crate::plan::{BatchState, Decision, Staged, StreamHead};
use crate::postgres::heads::KnownHeads;
use crate::{AppendOutcome, AppendRequest, ExpectedVersion, Position};

/// A batch decided on known heads, ready for `lianxi_append_batch`.
pub(super) struct OneStatement<'a> {
    requests: &'a [&'a AppendRequest],
    /// The streams appended to, with the heads the batch was decided on.
    appended: Vec<(String, StreamHead)>,
    /// The streams only required unchanged, with the versions the batch was decided on.
    read: Vec<(String, i64)>,
    /// Every request's events, in request order: all were accepted.
    staged: Vec<Vec<Staged>>,
}

/// Decides the batch on the heads this process knows, and records its outcome as the heads
/// the next batch is decided on; `None` when a head is not known, or a request would not simply
/// append (a duplicate or a refusal is decided under locks, on heads read from the database).
pub(super) fn plan_one_statement<'a>(
    known: &KnownHeads,
    requests: &'a [&'a AppendRequest],
) -> Option<OneStatement<'a>> {
    let mut known = known.lock();
    let mut heads = HashMap::new();
    let mut appended = Vec::new();
    for request in requests {
        if heads.contains_key(&request.stream) {
            continue;
        }
        let head = match known.get(&request.stream) {
            Some(head) => head,
            // A stream the request says is new needs no head: the database checks it is.
            None if matches!(
                request.expected,
                ExpectedVersion::NoStream | ExpectedVersion::Exact(0)
            ) =>
            {
                StreamHead::default()
            }
            None => return None,
        };
        appended.push((request.stream.clone(), head.clone()));
        heads.insert(request.stream.clone(), head);
    }
    let mut read = Vec::new();
    for condition in requests.iter().flat_map(|request| &request.unchanged) {
        if heads.contains_key(&condition.stream) {
            continue;
        }
        // Unknown, it is taken to be as the request requires; the database checks it is.
        let head = known.get(&condition.stream).unwrap_or(StreamHead {
            version: condition.version,
            hash: None,
        });
        read.push((condition.stream.clone(), head.version));
        heads.insert(condition.stream.clone(), head);
    }
    let mut state = BatchState::new(0, heads, Vec::new(), to_stored_precision(Utc::now()));
    let mut staged = Vec::with_capacity(requests.len());
    for request in requests {
        match state.decide(request) {
            Decision::Append(events) => {
                state.accept(request, &events);
                staged.push(events);
            }
            Decision::Duplicate(_) | Decision::Refuse(_) => return None,
        }
    }
    for (stream, _) in &appended {
        known.insert(stream.clone(), state.head(stream));
    }
    Some(OneStatement {
        requests,
        appended,
        read,
        staged,
    })
}

/// Writes and commits a batch decided on known heads (`lianxi_append_batch`, one round trip);
/// `None` when the database refused it (a head had moved, or a command id or key is already in
/// the log) and wrote nothing.
pub(super) async fn write_one_statement(
    pool: &PgPool,
    writer: &str,
    planned: OneStatement<'_>,
) -> Result<Option<Committed>, sqlx::Error> {
    let OneStatement {
        requests,
        appended,
        read,
        mut staged,
    } = planned;
    let appends: Vec<(&AppendRequest, &[Staged])> = requests
        .iter()
        .zip(&staged)
        .map(|(request, events)| (*request, events.as_slice()))
        .collect();
    let (events, commands) = columns(&appends);
    let (appended, appended_head): (Vec<String>, Vec<StreamHead>) = appended.into_iter().unzip();
    let appended_version: Vec<i64> = appended_head.iter().map(|head| head.version).collect();
    let appended_hash: Vec<Option<&str>> = appended_head
        .iter()
        .map(|head| head.hash.as_deref())
        .collect();
    let (read, read_version): (Vec<String>, Vec<i64>) = read.into_iter().unzip();
    let mut conn = pool.acquire().await?;
    let written = bind_batch(
        sqlx::query_scalar(
            "SELECT lianxi_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
                                        $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
        )
        .bind(&appended)
        .bind(&appended_version)
        .bind(&appended_hash)
        .bind(&read)
        .bind(&read_version),
        &events,
        &commands,
        writer,
    )
    .fetch_all(&mut *conn)
    .await;
    let positions: Vec<Position> = match written {
        Ok(positions) => positions,
        Err(sqlx::Error::Database(error)) => {
            tracing::debug!(%error, "the one-statement batch was refused; preparing it under locks");
            return Ok(None);
        }
        Err(error) => return Err(error),
    };
    drop((events, commands));
    let mut next = positions.into_iter();
    for events in &mut staged {
        place(events, &mut next);
    }
    let last_position = staged
        .iter()
        .filter_map(|events| events.last())
        .map(|s| s.event.position)
        .max();
    Ok(Some(Committed {
        results: staged
            .into_iter()
            .map(|events| {
                Ok(AppendOutcome::Appended(
                    events.into_iter().map(|staged| staged.event).collect(),
                ))
            })
            .collect(),
        last_position,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::{event_hash, HashInput};
    use crate::{NewEvent, StreamVersion};
    use serde_json::json;
    use uuid::Uuid;

    fn request(stream: &str, expected: ExpectedVersion) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected,
            command_id: Uuid::new_v4(),
            idempotency: None,
            events: vec![NewEvent {
                id: Uuid::new_v4(),
                event_type: "A".into(),
                schema_version: 1,
                data: json!({"stream": stream}),
                metadata: json!({}),
            }],
            unchanged: Vec::new(),
        }
    }

    fn head(version: i64) -> StreamHead {
        StreamHead {
            version,
            hash: Some(format!("{version:064}")),
        }
    }

    #[test]
    fn a_batch_on_known_or_new_streams_is_decided_in_memory_and_leaves_its_heads() {
        let known = KnownHeads::default();
        known.lock().insert("known".into(), head(4));
        let mut guarded = request("new", ExpectedVersion::NoStream);
        guarded.unchanged = vec![StreamVersion::new("fact", 7)];
        let requests = [
            &request("known", ExpectedVersion::Exact(4)),
            &guarded,
            &request("known", ExpectedVersion::Any),
        ];
        let planned = plan_one_statement(&known, &requests).expect("decided in memory");
        assert_eq!(
            planned.appended,
            [
                ("known".to_owned(), head(4)),
                ("new".to_owned(), StreamHead::default())
            ]
        );
        // Unknown, a stream only read is taken to be at the version the request requires.
        assert_eq!(planned.read, [("fact".to_owned(), 7)]);
        let first = &planned.staged[0][0].event;
        assert_eq!(first.version, 5);
        assert_eq!(
            first.hash,
            event_hash(head(4).hash.as_deref(), &HashInput::from(first))
        );
        let third = &planned.staged[2][0].event;
        assert_eq!(third.version, 6);
        assert_eq!(
            third.hash,
            event_hash(Some(&first.hash), &HashInput::from(third))
        );
        // The next batch is decided on this one's heads.
        let mut heads = known.lock();
        assert_eq!(
            heads.get("known").map(|h| (h.version, h.hash)),
            Some((6, Some(third.hash.clone())))
        );
        assert_eq!(heads.get("new").map(|h| h.version), Some(1));
        assert_eq!(
            heads.get("fact"),
            None,
            "a stream only read is not learnt from a guess"
        );
    }

    #[test]
    fn an_unknown_head_or_anything_but_an_append_is_decided_under_locks() {
        let known = KnownHeads::default();
        known.lock().insert("known".into(), head(4));
        for expected in [ExpectedVersion::Any, ExpectedVersion::Exact(3)] {
            let unknown = request("unknown", expected);
            assert!(
                plan_one_statement(&known, &[&unknown]).is_none(),
                "{expected:?}"
            );
        }
        // A conflict on a known head may only be a stale guess: the database decides it.
        let stale = request("known", ExpectedVersion::Exact(3));
        assert!(plan_one_statement(&known, &[&stale]).is_none());
        // A command sent twice in one batch is a duplicate, read back under locks.
        let once = request("known", ExpectedVersion::Any);
        assert!(plan_one_statement(&known, &[&once, &once]).is_none());
        assert_eq!(
            known.lock().get("known"),
            Some(head(4)),
            "nothing decided, nothing learnt"
        );
    }
}
