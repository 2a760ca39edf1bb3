//! `lianxi demo`: the seed report's story ([`story`]) sent as real commands, so that a newcomer
//! sees real boards, statistics and traces in a minute.
//!
//! Every step goes through [`commands::CommandHandler`], the same path as `POST /v1/commands`:
//! authorised (as an admin principal called "lianxi demo"), decided from the log, appended with
//! its hash. It needs no running server and works beside one on the same data directory (the
//! store takes the database's write lock per batch; the server's projectors notice the appends).
//!
//! Idempotent: every step carries an idempotency key (`lianxi-demo:<step>`), so a second run,
//! or a run after an interrupted one, writes only what is missing — nothing at all the second
//! time.

pub mod story;

use std::sync::Arc;

use commands::{CommandError, CommandHandler, CommandRequest, Principal, Role};
use sha2::{Digest, Sha256};
use store::EventStore;
use uuid::Uuid;

use crate::progress::Progress;

/// The demo's actor: the same id on every run, so its idempotency keys are found again.
pub const ACTOR: Uuid = story::id(0xff, 1);
/// The display name written on the demo's events.
pub const ACTOR_NAME: &str = "lianxi demo";

/// Why the demo stopped. Steps before the failing one stay written; a rerun resumes.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Story(#[from] story::BadTime),
    #[error("demo step {key} ({name}) is not a valid command: {detail}")]
    Invalid {
        key: String,
        name: &'static str,
        detail: String,
    },
    #[error(
        "demo step {key} was loaded before with other content: this data directory holds \
         another version of the demo story"
    )]
    OtherVersion { key: String },
    #[error("demo step {key} ({name}) was refused: {error}")]
    Refused {
        key: String,
        name: &'static str,
        error: CommandError,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

/// What a run of the demo did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Steps of the story sent.
    pub commands: usize,
    /// Steps answered from an earlier run (nothing written for them).
    pub already_loaded: usize,
    /// Events this run appended.
    pub events: usize,
    /// The log's head after the run.
    pub head: i64,
}

fn principal() -> Principal {
    Principal {
        actor_id: ACTOR,
        name: ACTOR_NAME.to_owned(),
        role: Role::Admin,
        scope: None,
    }
}

/// The idempotency digest of a command, computed as the gateway computes it: the name and the
/// body's canonical JSON.
fn request_hash(name: &str, body: &serde_json::Value) -> String {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([0]);
    hasher.update(store::canonical::canonical_bytes(body));
    hex::encode(hasher.finalize())
}

/// Sends the whole story to `store`, reporting progress on standard error.
pub async fn run(store: Arc<dyn EventStore>) -> Result<Summary, DemoError> {
    let steps = story::steps()?;
    let handler = CommandHandler::new(store.clone());
    let mut progress = Progress::new("demo", "commands", steps.len() as u64);
    let mut summary = Summary {
        commands: 0,
        already_loaded: 0,
        events: 0,
        head: 0,
    };
    for step in &steps {
        let bytes = serde_json::to_vec(&step.body).map_err(|e| DemoError::Invalid {
            key: step.key.clone(),
            name: step.name,
            detail: e.to_string(),
        })?;
        let command =
            domain::Command::parse(step.name, &bytes).map_err(|e| DemoError::Invalid {
                key: step.key.clone(),
                name: step.name,
                detail: format!("{e:?}"),
            })?;
        let request = CommandRequest {
            command,
            principal: principal(),
            request_hash: request_hash(step.name, &step.body),
            idempotency_key: Some(format!("lianxi-demo:{}", step.key)),
            if_match: None,
            correlation_id: None,
            causation_id: None,
        };
        match handler.handle(request).await {
            Ok(outcome) if outcome.duplicate => summary.already_loaded += 1,
            Ok(outcome) => summary.events += outcome.events.len(),
            Err(CommandError::IdempotencyKeyReused(_)) => {
                return Err(DemoError::OtherVersion {
                    key: step.key.clone(),
                })
            }
            Err(error) => {
                return Err(DemoError::Refused {
                    key: step.key.clone(),
                    name: step.name,
                    error,
                })
            }
        }
        summary.commands += 1;
        progress.set(summary.commands as u64);
    }
    progress.finish();
    summary.head = store.head().await?;
    Ok(summary)
}

/// The closing message: what was written, and how to look at a board. `store_flag` is the
/// option that names the store (`--data-dir DIR` or `--database-url …`).
pub fn report(summary: &Summary, store_flag: &str) -> String {
    let what = if summary.events == 0 {
        format!(
            "the demo was already loaded: {} commands answered from the log, nothing new written",
            summary.commands
        )
    } else {
        format!(
            "{} commands sent, {} events appended ({} steps were already loaded)",
            summary.commands, summary.events, summary.already_loaded
        )
    };
    format!(
        "demo: {what}; the log's head is at position {head}.\n\
         \n\
         See 沱源社区's board (start the server first if it is not running):\n\
         \x20 lianxi serve {store_flag} &\n\
         \x20 TOKEN=$(lianxi token issue {store_flag} --role admin --name me)\n\
         \x20 curl -s -H \"authorization: Bearer $TOKEN\" \\\n\
         \x20   'http://127.0.0.1:8080/v1/communities/{tuoyuan}/board?as_of=2018-06-04T00:00:00%2B08:00'\n\
         Communities: 三江 {sanjiang}, 沱源 {tuoyuan}, 十里 {shili}, 玉龙街 {yulongjie}.",
        head = summary.head,
        tuoyuan = story::TUOYUAN,
        sanjiang = story::SANJIANG,
        shili = story::SHILI,
        yulongjie = story::YULONGJIE,
    )
}
