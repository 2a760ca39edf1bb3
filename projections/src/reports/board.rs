//! `--report board`: every community's board, as `GET /v1/communities/{id}/board` answers it.
//!
//! JSON: with `--community`, that one board (the endpoint's document); otherwise the list of
//! every board (of `--district` when given), in community-id order. CSV: one summary line per
//! community. Built by the server's own board projector, so a replay up to position N equals
//! the live board at N.

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

use super::{Output, Params, Report, ReportError};
use crate::projectors::board::{self, Board, BoardProjector};
use crate::readdb::ReadDb;
use crate::Projector;

pub fn report() -> Box<dyn Report> {
    Box::new(BoardReport)
}

struct BoardReport;

/// One community's board, flattened for CSV.
#[derive(Debug, Serialize)]
struct BoardRow {
    community_id: Uuid,
    name: String,
    committee: Option<String>,
    district_id: Uuid,
    members: usize,
    projects: usize,
    projects_claimed: usize,
    projects_completed: usize,
    last_held: Option<String>,
    next_scheduled: Option<String>,
    regular_this_quarter: bool,
    requests_open: usize,
    requests_resolved: u64,
    activities: u64,
    participants: u64,
    volunteers: u64,
    volunteer_hours: u64,
    beneficiaries: u64,
    funds_yuan: u64,
}

impl From<&Board> for BoardRow {
    fn from(b: &Board) -> Self {
        let with_status = |status: &str| b.projects.iter().filter(|p| p.status == status).count();
        Self {
            community_id: b.community.id,
            name: b.community.name.clone(),
            committee: b.community.committee.clone(),
            district_id: b.community.district_id,
            members: b.members.len(),
            projects: b.projects.len(),
            projects_claimed: b.projects.iter().filter(|p| p.claimant.is_some()).count(),
            projects_completed: with_status("completed"),
            last_held: b.meetings.last_held.clone(),
            next_scheduled: b.meetings.next_scheduled.clone(),
            regular_this_quarter: b.meetings.regular_this_quarter,
            requests_open: b.requests.open.len(),
            requests_resolved: b.requests.resolved,
            activities: b.totals.activities,
            participants: b.totals.participants,
            volunteers: b.totals.volunteers,
            volunteer_hours: b.totals.volunteer_hours,
            beneficiaries: b.totals.beneficiaries,
            funds_yuan: b.totals.funds_yuan,
        }
    }
}

/// The ids of every community with a board, in key order.
async fn communities(db: &ReadDb) -> Result<Vec<Uuid>, ReportError> {
    let mut ids = Vec::new();
    for doc in db.all(board::NAME, "community").await? {
        let value: serde_json::Value = serde_json::from_str(&doc)
            .map_err(|e| ReportError::Output(format!("board document: {e}")))?;
        let id = value
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|v| Uuid::parse_str(v).ok())
            .ok_or_else(|| ReportError::Output("a board document without an id".to_owned()))?;
        ids.push(id);
    }
    Ok(ids)
}

#[async_trait]
impl Report for BoardReport {
    fn name(&self) -> &'static str {
        "board"
    }

    fn about(&self) -> &'static str {
        "every community's board (--community: one board, as the endpoint answers it)"
    }

    fn projectors(&self) -> Vec<Box<dyn Projector>> {
        vec![Box::new(BoardProjector::default())]
    }

    async fn produce(&self, db: &ReadDb, params: &Params) -> Result<Output, ReportError> {
        if let Some(community) = params.community {
            let found = board::board(db, community, params.as_of)
                .await?
                .ok_or_else(|| ReportError::NotFound(format!("no community {community}")))?;
            return Output::document(&found, &[BoardRow::from(&found)]);
        }
        let mut boards = Vec::new();
        for community in communities(db).await? {
            if let Some(found) = board::board(db, community, params.as_of).await? {
                if params
                    .district
                    .is_none_or(|d| d == found.community.district_id)
                {
                    boards.push(found);
                }
            }
        }
        let rows: Vec<BoardRow> = boards.iter().map(BoardRow::from).collect();
        Output::document(&boards, &rows)
    }
}
