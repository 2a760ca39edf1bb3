use lianxi_store::hash::{event_hash, HashInput};
use serde_json::json;
use std::time::Instant;
use uuid::Uuid;
#[test]
fn hash_speed() {
    let data = json!({"project_id": Uuid::now_v7(), "community_id": "0190d6c4-7a4e-7c2e-9d1a-3f6b2c8e5a01", "title": "Spring clean-up of the Shili courtyard and its bicycle shed", "theme": "living_environment", "need": "Twenty volunteers for two Saturdays, gloves, bags and a van for the rubbish; the property office lends ladders."});
    let metadata = json!({"command": "ProposeProject", "command_id": Uuid::now_v7(), "actor": {"id": "6c69616e-7869-0000-0000-000000000001", "role": "admin"}});
    let n = 20000;
    let t = Instant::now();
    let mut last = String::new();
    for i in 0..n {
        let input = HashInput {
            id: Uuid::now_v7(),
            stream: "project-x",
            version: i,
            event_type: "ProjectProposed",
            schema_version: 1,
            data: &data,
            metadata: &metadata,
            recorded_at: chrono::Utc::now(),
        };
        last = event_hash(
            Some(&last).filter(|s| !s.is_empty()).map(|s| s.as_str()),
            &input,
        );
    }
    eprintln!("hash {:?}/event", t.elapsed() / n as u32);
    let t = Instant::now();
    for _ in 0..n {
        let _ = serde_json::to_string(&data);
        let _ = serde_json::to_string(&metadata);
    }
    eprintln!("to_string x2 {:?}/event", t.elapsed() / n as u32);
}
