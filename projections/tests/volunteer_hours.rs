//! The worked example of a report added in one file: volunteer hours per theme per quarter,
//! replayed from history in memory, narrowed by district and quarter, printed as JSON and CSV.
//! The log is on each backend; a replay's read models are always private and in memory.

mod backends;

use backends::{on_both_backends, Backend};

use commands::{CommandHandler, CommandRequest, Principal, Role};
use projections::reports::volunteer_hours::VolunteerHoursRow;
use projections::reports::{self, Format, Params};
use serde_json::{json, Value};
use uuid::Uuid;

const ZHAOZHEN: Uuid = Uuid::from_u128(0xd1);
const OTHER: Uuid = Uuid::from_u128(0xd2);

async fn send(handler: &CommandHandler, name: &str, body: Value) -> i64 {
    let command = domain::Command::parse(name, body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{name} {body}: {e:?}"));
    handler
        .handle(CommandRequest {
            command,
            principal: Principal {
                actor_id: Uuid::from_u128(1),
                name: "report test".into(),
                role: Role::Admin,
                scope: None,
            },
            request_hash: String::new(),
            idempotency_key: None,
            if_match: None,
            correlation_id: None,
            causation_id: None,
        })
        .await
        .unwrap_or_else(|e| panic!("{name} {body} refused: {e}"))
        .position
}

/// A launched project of `theme` in `district`'s community, and its activities: (business
/// time, volunteers, hours). Returns the position of the last event.
async fn project(
    handler: &CommandHandler,
    n: u128,
    district: Uuid,
    theme: &str,
    activities: &[(&str, u32, u32)],
) -> i64 {
    let community = Uuid::from_u128(0xc0 + district.as_u128());
    let unit = Uuid::from_u128(0x100 + district.as_u128());
    let project = Uuid::from_u128(0x1000 + n);
    send(handler, "ProposeProject", json!({"project_id": project, "community_id": community, "title": format!("项目{n}"), "theme": theme})).await;
    send(
        handler,
        "ClaimProject",
        json!({"project_id": project, "unit_id": unit}),
    )
    .await;
    let mut position = send(handler, "LaunchProject", json!({"project_id": project})).await;
    for (i, (at, volunteers, hours)) in activities.iter().enumerate() {
        position = send(
            handler,
            "RecordActivity",
            json!({
                "project_id": project,
                "activity_id": Uuid::from_u128(0x2000 + n * 100 + i as u128),
                "title": "志愿服务",
                "participants": 20,
                "volunteers": volunteers,
                "volunteer_hours": hours,
                "occurred_at": at,
            }),
        )
        .await;
    }
    position
}

async fn world(handler: &CommandHandler) {
    for district in [ZHAOZHEN, OTHER] {
        let community = Uuid::from_u128(0xc0 + district.as_u128());
        let unit = Uuid::from_u128(0x100 + district.as_u128());
        send(
            handler,
            "RegisterDistrict",
            json!({"district_id": district, "name": format!("街道{district}")}),
        )
        .await;
        send(
            handler,
            "RegisterCommunity",
            json!({"community_id": community, "district_id": district, "name": "社区"}),
        )
        .await;
        send(
            handler,
            "RegisterUnit",
            json!({"unit_id": unit, "district_id": district, "name": "单位"}),
        )
        .await;
        send(
            handler,
            "AdmitMemberUnit",
            json!({"community_id": community, "unit_id": unit, "kind": "double_report"}),
        )
        .await;
    }
}

fn row(
    quarter: &str,
    district: Uuid,
    theme: &str,
    activities: u64,
    volunteers: u64,
    hours: u64,
) -> VolunteerHoursRow {
    VolunteerHoursRow {
        quarter: quarter.into(),
        district_id: district,
        theme: theme.into(),
        activities,
        volunteers,
        volunteer_hours: hours,
    }
}

fn rows(output: &reports::Output) -> Vec<VolunteerHoursRow> {
    serde_json::from_value(output.json().expect("JSON")).expect("rows")
}

async fn volunteer_hours_are_summed_per_theme_per_quarter_and_narrowed_on_request(
    backend: Backend,
) {
    let place = backend.place().await;
    let store = place.store().await;
    let handler = CommandHandler::new(store.clone());
    world(&handler).await;
    project(
        &handler,
        1,
        ZHAOZHEN,
        "public_welfare",
        &[
            ("2018-04-25T15:00:00+08:00", 12, 48),
            // 1 July 00:30 in China is still 30 June in UTC: the quarter is China's.
            ("2018-07-01T00:30:00+08:00", 4, 8),
        ],
    )
    .await;
    let early = project(
        &handler,
        2,
        ZHAOZHEN,
        "living_environment",
        &[("2018-05-04T09:30:00+08:00", 16, 64)],
    )
    .await;
    project(
        &handler,
        3,
        ZHAOZHEN,
        "public_welfare",
        &[("2018-06-30T23:00:00+08:00", 3, 6)],
    )
    .await;
    project(
        &handler,
        4,
        OTHER,
        "civility",
        &[("2018-05-10T10:00:00+08:00", 2, 4)],
    )
    .await;
    // A project without activities has no row.
    project(&handler, 5, ZHAOZHEN, "party_work", &[]).await;

    let report = reports::find("volunteer-hours").expect("registered");
    let all = reports::replay(
        store.as_ref(),
        report.as_ref(),
        None,
        &Params::now(),
        |_, _| {},
    )
    .await
    .expect("replayed");
    let q2_z = |theme, a, v, h| row("2018Q2", ZHAOZHEN, theme, a, v, h);
    assert_eq!(
        rows(&all.output),
        vec![
            q2_z("public_welfare", 2, 15, 54),
            q2_z("living_environment", 1, 16, 64),
            row("2018Q2", OTHER, "civility", 1, 2, 4),
            row("2018Q3", ZHAOZHEN, "public_welfare", 1, 4, 8),
        ],
        "rows come by quarter, then district, then theme in DOMAIN.md's order"
    );

    let mut narrow = Params::now();
    narrow.district = Some(ZHAOZHEN);
    narrow.quarter = Some(domain::values::Quarter::parse("2018Q2").expect("a quarter"));
    let narrowed = reports::replay(store.as_ref(), report.as_ref(), None, &narrow, |_, _| {})
        .await
        .expect("replayed");
    assert_eq!(
        narrowed.output.csv(),
        "quarter,district_id,theme,activities,volunteers,volunteer_hours\n\
         2018Q2,00000000-0000-0000-0000-0000000000d1,public_welfare,2,15,54\n\
         2018Q2,00000000-0000-0000-0000-0000000000d1,living_environment,1,16,64\n"
    );
    let mut csv = Vec::new();
    narrowed
        .output
        .write(Format::Csv, &mut csv)
        .expect("written");
    assert_eq!(
        String::from_utf8(csv).expect("UTF-8"),
        narrowed.output.csv()
    );

    // Replayed up to a position, the report is what the log held then.
    let then = reports::replay(
        store.as_ref(),
        report.as_ref(),
        Some(early),
        &narrow,
        |_, _| {},
    )
    .await
    .expect("replayed");
    assert_eq!(then.position, early);
    assert_eq!(
        rows(&then.output),
        vec![
            q2_z("public_welfare", 1, 12, 48),
            q2_z("living_environment", 1, 16, 64),
        ]
    );
}

on_both_backends!(volunteer_hours_are_summed_per_theme_per_quarter_and_narrowed_on_request,);
