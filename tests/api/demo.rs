//! `lianxi demo`: the seed report's story as real commands, beside a running server or before
//! one starts; a second run adds nothing.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{cli, spawn_app, TestApp};

const TUOYUAN: &str = "2018a000-0000-4000-8000-000200000002";
const YULONGJIE: &str = "2018a000-0000-4000-8000-000200000004";
/// The report's publication date, so that "last held" and "next scheduled" do not move.
const AS_OF: &str = "2018-06-04T00%3A51%3A19%2B08%3A00";

async fn demo(app: &TestApp) -> (String, String) {
    let mut args = vec!["demo".to_owned()];
    args.extend(app.store_args());
    let output = cli(&args).await;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "lianxi demo failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

/// A community's board as of the report's date, once the board has reached the log's head.
async fn board(app: &TestApp, community: &str) -> Value {
    let head = app.head().await.to_string();
    let reply = app
        .get(
            &format!("/v1/communities/{community}/board?as_of={AS_OF}"),
            Some(&app.admin_token),
            &[("x-min-position", &head)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("x-projection-position"), Some(head.as_str()));
    reply.json
}

fn project<'a>(board: &'a Value, title: &str) -> &'a Value {
    board["projects"]
        .as_array()
        .expect("a project list")
        .iter()
        .find(|p| p["title"] == title)
        .unwrap_or_else(|| panic!("no project {title:?} on {board}"))
}

#[tokio::test]
async fn the_demo_loads_the_seed_story_beside_a_running_server_and_a_second_run_adds_nothing() {
    let app = spawn_app().await;
    let (stdout, stderr) = demo(&app).await;
    assert!(stdout.contains("events appended"), "{stdout}");
    assert!(
        stdout.contains(&format!("/v1/communities/{TUOYUAN}/board")),
        "{stdout}"
    );
    assert!(
        stderr.contains("demo: ") && stderr.contains("commands/s"),
        "progress lines on stderr when it is not a terminal: {stderr}"
    );

    let tuoyuan = board(&app, TUOYUAN).await;
    let vaccination = project(&tuoyuan, "“4·25”预防接种宣传活动");
    assert_eq!(vaccination["status"], "completed");
    assert_eq!(vaccination["claimant"]["name"], "县妇幼保健院党总支");
    assert!(tuoyuan["totals"]["participants"].as_u64() >= Some(300));
    assert!(
        tuoyuan["recent"]
            .as_array()
            .expect("a feed")
            .iter()
            .any(|r| r["summary"].as_str().is_some_and(|s| s.contains("300"))),
        "the 4·25 activity with its 300 participants is in the feed: {tuoyuan}"
    );
    // The disabled persons' federation's gifts to 10 households were in Yulongjie.
    let yulongjie = board(&app, YULONGJIE).await;
    assert_eq!(yulongjie["totals"]["beneficiaries"], 10);
    assert_eq!(yulongjie["members"].as_array().map(Vec::len), Some(13));
    assert_eq!(project(&yulongjie, "残疾人帮扶慰问")["status"], "completed");
    insta::assert_json_snapshot!("demo_tuoyuan_board", tuoyuan);

    let head = app.head().await;
    let (again, _) = demo(&app).await;
    assert!(again.contains("already loaded"), "{again}");
    assert_eq!(app.head().await, head, "a second run appends nothing");
    assert_eq!(board(&app, TUOYUAN).await, tuoyuan);
}

#[tokio::test]
async fn the_demo_needs_no_server_and_a_server_started_after_it_shows_the_boards() {
    let mut app = spawn_app().await;
    app.kill9().await;
    demo(&app).await;
    app.restart().await;
    let tuoyuan = board(&app, TUOYUAN).await;
    assert_eq!(tuoyuan["community"]["name"], "沱源社区");
    assert_eq!(
        tuoyuan["meetings"]["next_scheduled"],
        "2018-07-18T06:30:00Z"
    );
    assert_eq!(tuoyuan["meetings"]["regular_this_quarter"], true);
}

/// Hides what changes from run to run (recording times, the hashes that cover them) after
/// checking its shape; the demo's ids and business times are fixed, so everything else is pinned.
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_redaction(
        ".**.recorded_at",
        insta::dynamic_redaction(|value, _| {
            let text = value.as_str().unwrap_or_default();
            assert!(
                chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                "recorded_at {text:?} is RFC 3339"
            );
            "[recorded_at]"
        }),
    );
    settings.add_redaction(
        ".**.hash",
        insta::dynamic_redaction(|value, _| {
            let text = value.as_str().unwrap_or_default();
            assert!(
                text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()),
                "hash {text:?} is 64 hex digits"
            );
            "[hash]"
        }),
    );
    settings
}

/// Every read model after the demo story, pinned: district statistics overall and for the
/// quarter of the 4·25 activity, a unit's profile, a project, a meeting, a request, the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_model_after_the_demo_story() {
    let app = spawn_app().await;
    demo(&app).await;
    let head = app.head().await.to_string();
    let get = |path: String| {
        let app = &app;
        let head = head.clone();
        async move {
            let reply = app
                .get(&path, Some(&app.admin_token), &[("x-min-position", &head)])
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
            reply.json
        }
    };
    let tuoyuan = board(&app, TUOYUAN).await;
    let district = tuoyuan["community"]["district_id"]
        .as_str()
        .expect("a district")
        .to_owned();
    let vaccination = project(&tuoyuan, "“4·25”预防接种宣传活动").clone();
    let project_id = vaccination["project_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let unit_id = vaccination["claimant"]["unit_id"]
        .as_str()
        .expect("a claimant")
        .to_owned();
    let meeting_id = vaccination["meeting_id"]
        .as_str()
        .expect("claimed at a meeting")
        .to_owned();

    let stats = get(format!("/v1/districts/{district}/stats")).await;
    let quarter = get(format!("/v1/districts/{district}/stats?quarter=2018Q2")).await;
    let unit = get(format!("/v1/units/{unit_id}")).await;
    let item = get(format!("/v1/projects/{project_id}")).await;
    let meeting = get(format!("/v1/meetings/{meeting_id}")).await;
    let yulongjie = board(&app, YULONGJIE).await;
    let sanjiang = board(&app, "2018a000-0000-4000-8000-000200000001").await;
    let request_id = sanjiang["requests"]["open"]
        .as_array()
        .and_then(|open| open.first())
        .map(|r| r["request_id"].clone())
        .unwrap_or(Value::Null);
    let trace = get(format!("/v1/trace?project={project_id}")).await;

    settings().bind(|| {
        insta::assert_json_snapshot!("demo_district_stats", stats);
        insta::assert_json_snapshot!("demo_district_stats_2018Q2", quarter);
        insta::assert_json_snapshot!("demo_unit_profile", unit);
        insta::assert_json_snapshot!("demo_project", item);
        insta::assert_json_snapshot!("demo_meeting", meeting);
        insta::assert_json_snapshot!("demo_yulongjie_board_totals", yulongjie["totals"]);
        insta::assert_json_snapshot!("demo_trace_of_the_vaccination_day", trace);
    });
    // The market-supervision bureau's request to Sanjiang was resolved in the story.
    assert_eq!(request_id, Value::Null, "no request left open in Sanjiang");
    assert!(sanjiang["requests"]["resolved"].as_u64() >= Some(1));
}
