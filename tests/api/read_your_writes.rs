//! Read-your-writes: a command followed at once by a read with `X-Min-Position` sees its effect,
//! every time; and a position the log has not reached is a 503 after the wait, not a stale answer.

use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_with_x_min_position_sees_the_command_just_sent_a_thousand_times_in_a_row() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    for n in 1..=1_000 {
        let response = app
            .ok(
                "ProposeProject",
                json!({"community_id": world.community, "title": format!("项目 {n}"),
                       "theme": "civility"}),
            )
            .await;
        let position = response["position"].as_i64().expect("a position");
        let project = response["stream"]
            .as_str()
            .and_then(|s| s.strip_prefix("project-"))
            .expect("a project stream")
            .to_owned();
        let board = app.board_at(world.community, &position.to_string()).await;
        assert_eq!(board.status, 200, "{}", board.text());
        let reached: i64 = board
            .header("x-projection-position")
            .and_then(|v| v.parse().ok())
            .expect("X-Projection-Position");
        assert!(
            reached >= position,
            "read {n} answered as of {reached} < {position}"
        );
        let projects = board.json["projects"].as_array().expect("projects");
        assert_eq!(projects.len(), n, "read {n} sees every project so far");
        assert!(
            projects.iter().any(|p| p["project_id"] == project.as_str()),
            "read {n} sees the project just proposed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_beyond_the_log_is_a_503_with_retry_after_once_the_wait_is_over() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let head = app.head().await;
    let beyond = (head + 1_000).to_string();
    let started = std::time::Instant::now();
    let reply = app.board_at(world.community, &beyond).await;
    reply.assert_problem(503, "projection_behind");
    assert!(reply.header("retry-after").is_some());
    assert!(started.elapsed() >= std::time::Duration::from_secs(5));
    let bad = app.board_at(world.community, "soon").await;
    bad.assert_problem(400, "invalid_header");
}

/// A client polling a board sends back its `ETag`: 304 without a body while the board is the
/// same, the new board with a new tag once a command changed it; the scope is checked first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_board_polled_with_its_etag_is_not_modified_until_a_command_changes_it() {
    let app = spawn_app().await;
    let world = app.world(1).await;
    let path = format!("/v1/communities/{}/board", world.community);
    let head = app.head().await.to_string();
    let admin = Some(app.admin_token.as_str());
    let first = app.get(&path, admin, &[("x-min-position", &head)]).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'),
        "a strong tag: {etag}"
    );
    assert_eq!(first.header("cache-control"), Some("no-cache"));

    // The same board: 304, no body, the same tag and the position it is as of.
    for sent in [
        etag.clone(),
        format!("W/{etag}"),
        format!("\"other\", {etag}"),
        "*".to_owned(),
    ] {
        let again = app.get(&path, admin, &[("if-none-match", &sent)]).await;
        assert_eq!(again.status, 304, "If-None-Match: {sent}");
        assert!(again.bytes.is_empty(), "{}", again.text());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        assert!(again.header("x-projection-position").is_some());
    }
    let other = app
        .get(&path, admin, &[("if-none-match", "\"other\"")])
        .await;
    assert_eq!(other.status, 200);
    assert_eq!(other.json, first.json);

    // Outside the token's scope, the tag does not get a 304.
    let elsewhere = app.register_district("别的街道").await;
    let stranger = app.register_community(elsewhere, "别的社区").await;
    let secretary = app
        .issue_token("community_secretary", Some(stranger), "别的书记")
        .await;
    app.get(&path, Some(&secretary), &[("if-none-match", &etag)])
        .await
        .assert_problem(403, "forbidden");

    // A command of the community: the board and its tag change.
    let proposed = app
        .ok(
            "ProposeProject",
            json!({"community_id": world.community, "title": "新项目", "theme": "civility"}),
        )
        .await;
    let position = proposed["position"]
        .as_i64()
        .expect("a position")
        .to_string();
    let changed = app
        .get(
            &path,
            admin,
            &[("if-none-match", &etag), ("x-min-position", &position)],
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.text());
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
    assert_eq!(changed.json["projects"][0]["title"], "新项目");
}

/// A client that accepts gzip gets the board compressed: the same JSON once inflated, marked
/// `Content-Encoding: gzip`, under an entity tag of its own, and 304 for that tag alone. A
/// client that does not, or refuses gzip, gets the JSON as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_accepting_gzip_gets_the_same_board_compressed_under_its_own_tag() {
    use std::io::Read as _;

    let app = spawn_app().await;
    let world = app.world(1).await;
    for n in 0..20 {
        app.ok(
            "ProposeProject",
            json!({"community_id": world.community, "title": format!("项目 {n}"),
                   "theme": "civility"}),
        )
        .await;
    }
    let path = format!("/v1/communities/{}/board", world.community);
    let head = app.head().await.to_string();
    let admin = Some(app.admin_token.as_str());
    let plain = app.get(&path, admin, &[("x-min-position", &head)]).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    let plain_tag = plain.header("etag").expect("an ETag").to_owned();

    let zipped = app
        .get(&path, admin, &[("accept-encoding", "br;q=1.0, gzip;q=0.8")])
        .await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("content-type"), Some("application/json"));
    assert_eq!(zipped.header("vary"), Some("accept-encoding"));
    let zipped_tag = zipped.header("etag").expect("an ETag").to_owned();
    assert_eq!(
        zipped_tag,
        format!("{}-gzip\"", plain_tag.trim_end_matches('"')),
        "the gzip representation's own strong tag"
    );
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(zipped.bytes.as_slice())
        .read_to_end(&mut inflated)
        .expect("a gzip body");
    assert_eq!(inflated, plain.bytes, "the same JSON, byte for byte");
    assert!(
        zipped.bytes.len() * 2 < plain.bytes.len(),
        "compressed: {} of {} bytes",
        zipped.bytes.len(),
        plain.bytes.len()
    );

    // Each tag is 304 only for its own representation.
    let again = app
        .get(
            &path,
            admin,
            &[("accept-encoding", "gzip"), ("if-none-match", &zipped_tag)],
        )
        .await;
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(zipped_tag.as_str()));
    let crossed = app
        .get(
            &path,
            admin,
            &[("accept-encoding", "gzip"), ("if-none-match", &plain_tag)],
        )
        .await;
    assert_eq!(crossed.status, 200);
    assert_eq!(crossed.bytes, zipped.bytes);

    // Refused by name, or only `identity`: the JSON as it is.
    for accept in ["gzip;q=0, *", "identity", "*;q=0", "deflate"] {
        let reply = app.get(&path, admin, &[("accept-encoding", accept)]).await;
        assert_eq!(reply.status, 200, "Accept-Encoding: {accept}");
        assert_eq!(
            reply.header("content-encoding"),
            None,
            "Accept-Encoding: {accept}"
        );
        assert_eq!(reply.bytes, plain.bytes, "Accept-Encoding: {accept}");
    }
    // Any coding, gzip not refused: compressed.
    let any = app.get(&path, admin, &[("accept-encoding", "*")]).await;
    assert_eq!(any.header("content-encoding"), Some("gzip"));
}
