//! A batch's events and command rows as column arrays, bound in the parameter order both batch
//! functions (`lianxi_write_batch`, `lianxi_append_batch`) take them.

use chrono::{DateTime, Utc};
use sqlx::postgres::PgArguments;
use sqlx::query::QueryScalar;
use sqlx::Postgres;
use uuid::Uuid;

use crate::plan::Staged;
use crate::{AppendRequest, Position};

/// The events and command rows of `appends`, column by column.
pub(super) fn columns<'a>(
    appends: &[(&'a AppendRequest, &'a [Staged])],
) -> (EventColumns<'a>, CommandColumns<'a>) {
    let mut events = EventColumns::default();
    let mut commands = CommandColumns::default();
    for (request, staged) in appends {
        for staged in *staged {
            events.push(request.command_id, staged);
        }
        commands.push(request, staged, events.id.len());
    }
    (events, commands)
}

/// Binds a batch's events, command rows and writer name, in the parameter order both
/// `lianxi_write_batch` and the end of `lianxi_append_batch` take them.
pub(super) fn bind_batch<'q>(
    query: QueryScalar<'q, Postgres, Position, PgArguments>,
    events: &'q EventColumns<'_>,
    commands: &'q CommandColumns<'_>,
    writer: &'q str,
) -> QueryScalar<'q, Postgres, Position, PgArguments> {
    query
        .bind(&events.id)
        .bind(&events.stream)
        .bind(&events.version)
        .bind(&events.event_type)
        .bind(&events.schema_version)
        .bind(&events.data)
        .bind(&events.metadata)
        .bind(&events.recorded_at)
        .bind(&events.hash)
        .bind(&events.command_id)
        .bind(&commands.command_id)
        .bind(&commands.scope)
        .bind(&commands.key)
        .bind(&commands.request_hash)
        .bind(&commands.stream)
        .bind(&commands.event_count)
        .bind(&commands.last)
        .bind(writer)
}

/// The events to write, column by column, as arrays.
#[derive(Default)]
pub(super) struct EventColumns<'a> {
    id: Vec<Uuid>,
    stream: Vec<&'a str>,
    version: Vec<i64>,
    event_type: Vec<&'a str>,
    schema_version: Vec<i32>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
    recorded_at: Vec<DateTime<Utc>>,
    hash: Vec<&'a str>,
    command_id: Vec<Uuid>,
}

impl<'a> EventColumns<'a> {
    /// Whether there is no event to write.
    pub fn is_empty(&self) -> bool {
        self.id.is_empty()
    }

    fn push(&mut self, command_id: Uuid, staged: &'a Staged) {
        let event = &staged.event;
        self.id.push(event.id);
        self.stream.push(&event.stream);
        self.version.push(event.version);
        self.event_type.push(&event.event_type);
        self.schema_version.push(event.schema_version);
        self.data.push(&staged.data);
        self.metadata.push(&staged.metadata);
        self.recorded_at.push(event.recorded_at);
        self.hash.push(&event.hash);
        self.command_id.push(command_id);
    }
}

/// The command rows to write, column by column.
#[derive(Default)]
pub(super) struct CommandColumns<'a> {
    command_id: Vec<Uuid>,
    scope: Vec<Option<&'a str>>,
    key: Vec<Option<&'a str>>,
    request_hash: Vec<Option<&'a str>>,
    stream: Vec<&'a str>,
    event_count: Vec<i64>,
    /// The 1-based index of the command's last event among the batch's events.
    last: Vec<i32>,
}

impl<'a> CommandColumns<'a> {
    /// Adds `request`'s row; `events_so_far` counts the batch's events up to its last one.
    fn push(&mut self, request: &'a AppendRequest, staged: &[Staged], events_so_far: usize) {
        if staged.is_empty() {
            return;
        }
        let key = request.idempotency.as_ref();
        self.command_id.push(request.command_id);
        self.scope.push(key.map(|key| key.scope.as_str()));
        self.key.push(key.map(|key| key.key.as_str()));
        self.request_hash
            .push(key.map(|key| key.request_hash.as_str()));
        self.stream.push(&request.stream);
        self.event_count
            .push(i64::try_from(staged.len()).unwrap_or(i64::MAX));
        self.last
            .push(i32::try_from(events_so_far).unwrap_or(i32::MAX));
    }
}
