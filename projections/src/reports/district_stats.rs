//! `--report district-stats`: a district's statistics, the same JSON as
//! `GET /v1/districts/{id}/stats[?quarter=…]` (API.md). With several districts in the log,
//! `--district ID` picks one; `--quarter 2018Q2` narrows to one quarter. CSV: one line per
//! community and one for the district's totals.

use async_trait::async_trait;
use serde::Serialize;
use uuid::Uuid;

use super::{Output, Params, Report, ReportError};
use crate::projectors::district_stats::{self, query};
use crate::readdb::ReadDb;
use crate::Projector;

pub fn report() -> Box<dyn Report> {
    Box::new(DistrictStatsReport)
}

struct DistrictStatsReport;

/// One line of the CSV: a community, or the district's totals (`community_id` empty).
#[derive(Debug, Serialize)]
struct Row {
    district_id: Uuid,
    quarter: Option<String>,
    community_id: Option<Uuid>,
    name: String,
    meetings_regular: u64,
    meetings_extraordinary: u64,
    quarters_without_regular_meeting: u64,
    member_units: u64,
    projects_proposed: u64,
    projects_claimed: u64,
    projects_launched: u64,
    projects_completed: u64,
    projects_cancelled: u64,
    claim_rate: Option<f64>,
    completion_rate: Option<f64>,
    median_days_to_claim: Option<f64>,
    median_days_to_launch: Option<f64>,
    activities: u64,
    participants: u64,
    volunteers: u64,
    volunteer_hours: u64,
    beneficiaries: u64,
    funds_yuan: u64,
    requests_raised: u64,
    requests_resolved: u64,
    mean_rating: Option<f64>,
}

fn row(
    stats: &query::DistrictStats,
    community_id: Option<Uuid>,
    name: &str,
    f: &query::Figures,
) -> Row {
    Row {
        district_id: stats.district.id,
        quarter: stats.quarter.clone(),
        community_id,
        name: name.to_owned(),
        meetings_regular: f.meetings_regular,
        meetings_extraordinary: f.meetings_extraordinary,
        quarters_without_regular_meeting: f.quarters_without_regular_meeting,
        member_units: f.member_units,
        projects_proposed: f.projects_proposed,
        projects_claimed: f.projects_claimed,
        projects_launched: f.projects_launched,
        projects_completed: f.projects_completed,
        projects_cancelled: f.projects_cancelled,
        claim_rate: f.claim_rate,
        completion_rate: f.completion_rate,
        median_days_to_claim: f.median_days_to_claim,
        median_days_to_launch: f.median_days_to_launch,
        activities: f.activities,
        participants: f.participants,
        volunteers: f.volunteers,
        volunteer_hours: f.volunteer_hours,
        beneficiaries: f.beneficiaries,
        funds_yuan: f.funds_yuan,
        requests_raised: f.requests_raised,
        requests_resolved: f.requests_resolved,
        mean_rating: f.mean_rating,
    }
}

#[async_trait]
impl Report for DistrictStatsReport {
    fn name(&self) -> &'static str {
        "district-stats"
    }

    fn about(&self) -> &'static str {
        "a district's statistics, as GET /v1/districts/{id}/stats answers (--district, --quarter)"
    }

    fn projectors(&self) -> Vec<Box<dyn Projector>> {
        vec![Box::new(district_stats::DistrictStatsProjector::default())]
    }

    async fn produce(&self, db: &ReadDb, params: &Params) -> Result<Output, ReportError> {
        let district = match params.district {
            Some(district) => district,
            None => {
                let known = query::districts(db).await?;
                match known.as_slice() {
                    [only] => only.id,
                    [] => return Err(ReportError::NotFound("the log holds no district".into())),
                    several => {
                        let names: Vec<String> = several
                            .iter()
                            .map(|d| format!("{} ({})", d.name, d.id))
                            .collect();
                        return Err(ReportError::InvalidParams(format!(
                            "the log holds several districts; pick one with --district: {}",
                            names.join(", ")
                        )));
                    }
                }
            }
        };
        let stats = query::stats(db, district, params.quarter)
            .await?
            .ok_or_else(|| ReportError::NotFound(format!("no district {district}")))?;
        let mut rows: Vec<Row> = stats
            .communities
            .iter()
            .map(|c| row(&stats, Some(c.community_id), &c.name, &c.figures))
            .collect();
        rows.push(row(&stats, None, &stats.district.name, &stats.totals));
        Output::document(&stats, &rows)
    }
}
