//! The handler decides from histories it holds in memory; another process appending to the same
//! log must never make it answer differently than a decision from the log would.
//!
//! Two handlers over two `SqliteStore`s opened on one file stand for two processes (`lianxi
//! serve` and `lianxi demo`, say): each has its own memory and its own writer, and neither hears
//! of the other's appends except through the file.

use std::sync::Arc;

use domain::{Command, DomainError};
use lianxi_commands::{
    CommandError, CommandHandler, CommandOutcome, CommandRequest, Principal, Role,
};
use serde_json::{json, Value};
use store::sqlite::SqliteStore;
use store::EventStore;
use uuid::Uuid;

struct Process {
    handler: CommandHandler,
    store: Arc<dyn EventStore>,
}

async fn process(dir: &std::path::Path) -> Process {
    let store: Arc<dyn EventStore> = Arc::new(SqliteStore::open(dir).await.expect("open"));
    Process {
        handler: CommandHandler::new(Arc::clone(&store)),
        store,
    }
}

async fn send(process: &Process, name: &str, body: Value) -> Result<CommandOutcome, CommandError> {
    send_if_match(process, name, body, None).await
}

/// `send` with an `If-Match` of the target's version.
async fn send_if_match(
    process: &Process,
    name: &str,
    body: Value,
    if_match: Option<i64>,
) -> Result<CommandOutcome, CommandError> {
    let command = Command::parse(name, body.to_string().as_bytes()).expect("a valid command");
    process
        .handler
        .handle(CommandRequest {
            command,
            principal: Principal {
                actor_id: Uuid::from_u128(1),
                name: "admin".into(),
                role: Role::Admin,
                scope: None,
            },
            request_hash: String::new(),
            idempotency_key: None,
            if_match,
            correlation_id: None,
            causation_id: None,
        })
        .await
}

async fn ok(process: &Process, name: &str, body: Value) -> CommandOutcome {
    match send(process, name, body).await {
        Ok(outcome) => outcome,
        Err(error) => panic!("{name} was refused: {error:?}"),
    }
}

/// A district, a community, two registered units and a proposed project, sent through `p`.
struct World {
    community: Uuid,
    units: [Uuid; 2],
    project: Uuid,
}

async fn world(p: &Process) -> World {
    let district = Uuid::now_v7();
    let community = Uuid::now_v7();
    let units = [Uuid::now_v7(), Uuid::now_v7()];
    let project = Uuid::now_v7();
    ok(
        p,
        "RegisterDistrict",
        json!({"district_id": district, "name": "D"}),
    )
    .await;
    ok(
        p,
        "RegisterCommunity",
        json!({"community_id": community, "district_id": district, "name": "C"}),
    )
    .await;
    for (n, unit) in units.iter().enumerate() {
        ok(
            p,
            "RegisterUnit",
            json!({"unit_id": unit, "district_id": district, "name": format!("U{n}")}),
        )
        .await;
    }
    ok(
        p,
        "ProposeProject",
        json!({"project_id": project, "community_id": community, "title": "P", "theme": "civility"}),
    )
    .await;
    World {
        community,
        units,
        project,
    }
}

/// Two processes on one fresh log, and the world set up through the first.
async fn two_processes() -> (tempfile::TempDir, Process, Process, World) {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = process(dir.path()).await;
    let b = process(dir.path()).await;
    let world = world(&a).await;
    (dir, a, b, world)
}

fn admit(world: &World, unit: usize) -> Value {
    json!({"community_id": world.community, "unit_id": world.units[unit], "kind": "jurisdiction"})
}

fn claim(world: &World, unit: usize) -> Value {
    json!({"project_id": world.project, "unit_id": world.units[unit]})
}

async fn claims_in_log(store: &dyn EventStore, project: Uuid) -> usize {
    let events = store
        .read_stream(&format!("project-{project}"), 0)
        .await
        .expect("read");
    events
        .iter()
        .filter(|e| e.event_type == "ProjectClaimed")
        .count()
}

#[tokio::test]
async fn a_refusal_from_stale_memory_is_confirmed_from_the_log() {
    let (_dir, a, b, world) = two_processes().await;

    // A learns (and keeps in memory) that unit 0 is not a member.
    match send(&a, "ClaimProject", claim(&world, 0)).await {
        Err(CommandError::Rejected(DomainError::NotAMemberUnit { .. })) => {}
        other => panic!("expected not_a_member, got {other:?}"),
    }
    // B admits it; A's memory of the community is now behind the log.
    ok(&b, "AdmitMemberUnit", admit(&world, 0)).await;

    let claimed = ok(&a, "ClaimProject", claim(&world, 0)).await;
    assert_eq!(claimed.events[0].event_type, "ProjectClaimed");
    assert_eq!(claims_in_log(&*a.store, world.project).await, 1);
}

#[tokio::test]
async fn an_acceptance_from_stale_memory_of_the_target_is_refused_at_append() {
    let (_dir, a, b, world) = two_processes().await;
    ok(&a, "AdmitMemberUnit", admit(&world, 0)).await;
    ok(&a, "AdmitMemberUnit", admit(&world, 1)).await;

    // A remembers the project as proposed; B claims it for unit 1.
    ok(&b, "ClaimProject", claim(&world, 1)).await;

    match send(&a, "ClaimProject", claim(&world, 0)).await {
        Err(CommandError::Rejected(DomainError::ProjectAlreadyClaimed { claimant })) => {
            assert_eq!(claimant.to_string(), world.units[1].to_string());
        }
        other => panic!("expected project_already_claimed, got {other:?}"),
    }
    assert_eq!(claims_in_log(&*a.store, world.project).await, 1);
}

#[tokio::test]
async fn an_acceptance_from_stale_memory_of_a_fact_is_refused_at_append() {
    let (_dir, a, b, world) = two_processes().await;
    ok(&a, "AdmitMemberUnit", admit(&world, 0)).await;

    // A remembers unit 0 as a member; B withdraws it from the community.
    ok(
        &b,
        "WithdrawMemberUnit",
        json!({"community_id": world.community, "unit_id": world.units[0]}),
    )
    .await;

    match send(&a, "ClaimProject", claim(&world, 0)).await {
        Err(CommandError::Rejected(DomainError::NotAMemberUnit { .. })) => {}
        other => panic!("expected not_a_member, got {other:?}"),
    }
    assert_eq!(claims_in_log(&*a.store, world.project).await, 0);
}

#[tokio::test]
async fn an_if_match_refused_from_stale_memory_is_confirmed_from_the_log() {
    let (_dir, a, b, world) = two_processes().await;
    let community = format!("community-{}", world.community);
    ok(&a, "AdmitMemberUnit", admit(&world, 0)).await;
    ok(&b, "AdmitMemberUnit", admit(&world, 1)).await;
    let version = b
        .store
        .read_stream(&community, 0)
        .await
        .expect("read")
        .len();

    // The client read the community at its current version through B; A's memory is older.
    let version = i64::try_from(version).expect("small");
    let outcome = send_if_match(
        &a,
        "WithdrawMemberUnit",
        json!({"community_id": world.community, "unit_id": world.units[1]}),
        Some(version),
    )
    .await
    .expect("If-Match names the log's version, so the command is carried out");
    assert_eq!(outcome.version, version + 1);
}
