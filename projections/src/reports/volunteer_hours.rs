//! `--report volunteer-hours`: volunteer hours per theme per quarter, per district.
//!
//! The worked example of "adding a report is one new file plus one line": this file holds the
//! report's own small projector and its rows, and `reports!` in `mod.rs` names it. The
//! projector runs only in replays (the server does not keep this read model).
//!
//! An activity counts in the quarter of its business time (China Standard Time) and under the
//! theme of its project. Rows come in quarter order, then district, then the six themes in
//! DOMAIN.md's order; a (quarter, district, theme) without activities has no row.
//!
//! Documents: `project` (its theme and district, to place its activities), `community` (its
//! district, to place a new project) and `quarter` (the sums of one quarter, by district and
//! theme). Deterministic: sums in `BTreeMap`s, keys in a fixed order.

use std::collections::BTreeMap;

use async_trait::async_trait;
use domain::values::{Quarter, Theme};
use domain::Event;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{Output, Params, Report, ReportError};
use crate::collection::{Collection, Store};
use crate::event::ProjectedEvent;
use crate::readdb::ReadDb;
use crate::Projector;

/// The projection's name in the read-model tables.
pub const NAME: &str = "volunteer-hours";

pub fn report() -> Box<dyn Report> {
    Box::new(VolunteerHoursReport)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ProjectDoc {
    theme: Theme,
    district_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CommunityDoc {
    district_id: Uuid,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sums {
    activities: u64,
    volunteers: u64,
    volunteer_hours: u64,
}

/// One quarter: sums by district, then by theme.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct QuarterDoc {
    quarter: String,
    districts: BTreeMap<Uuid, BTreeMap<Theme, Sums>>,
}

/// Sums volunteer hours by quarter, district and theme.
pub struct VolunteerHoursProjector {
    projects: Collection<ProjectDoc>,
    communities: Collection<CommunityDoc>,
    quarters: Collection<QuarterDoc>,
}

impl Default for VolunteerHoursProjector {
    fn default() -> Self {
        Self {
            projects: Collection::new("project"),
            communities: Collection::new("community"),
            quarters: Collection::new("quarter"),
        }
    }
}

impl Projector for VolunteerHoursProjector {
    fn name(&self) -> &'static str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }


    fn want(&mut self, event: &ProjectedEvent) {
        match &event.event {
            Event::ProjectProposed(e) => self.communities.want(e.community_id.0),
            Event::ActivityRecorded(e) => {
                self.projects.want(e.project_id.0);
                self.quarters
                    .want(Quarter::of(event.occurred_at).to_string());
            }
            _ => {}
        }
    }

    fn collections(&mut self) -> Vec<&mut dyn Store> {
        vec![
            &mut self.projects,
            &mut self.communities,
            &mut self.quarters,
        ]
    }

    fn apply(&mut self, event: &ProjectedEvent) -> Result<(), String> {
        match &event.event {
            Event::CommunityRegistered(e) => self.communities.put(
                e.community_id.0.to_string(),
                None,
                CommunityDoc {
                    district_id: e.district_id.0,
                },
            ),
            Event::ProjectProposed(e) => {
                let district_id = self
                    .communities
                    .get(&e.community_id.0.to_string())
                    .map(|c| c.district_id);
                self.projects.put(
                    e.project_id.0.to_string(),
                    None,
                    ProjectDoc {
                        theme: e.theme,
                        district_id,
                    },
                );
            }
            Event::ActivityRecorded(e) => {
                let Some(project) = self.projects.get(&e.project_id.0.to_string()).cloned() else {
                    return Err(format!("activity of unknown project {}", e.project_id));
                };
                let Some(district) = project.district_id else {
                    return Ok(());
                };
                let quarter = Quarter::of(event.occurred_at).to_string();
                if self.quarters.get(&quarter).is_none() {
                    self.quarters.put(
                        quarter.clone(),
                        None,
                        QuarterDoc {
                            quarter: quarter.clone(),
                            districts: BTreeMap::new(),
                        },
                    );
                }
                if let Some(doc) = self.quarters.get_mut(&quarter) {
                    let sums = doc
                        .districts
                        .entry(district)
                        .or_default()
                        .entry(project.theme)
                        .or_default();
                    sums.activities += 1;
                    sums.volunteers += u64::from(e.volunteers.get());
                    sums.volunteer_hours += u64::from(e.volunteer_hours.get());
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// One row of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolunteerHoursRow {
    pub quarter: String,
    pub district_id: Uuid,
    /// The theme's code (DOMAIN.md).
    pub theme: String,
    pub activities: u64,
    pub volunteers: u64,
    pub volunteer_hours: u64,
}

/// The rows of the read model in `db`, narrowed by `--district` and `--quarter`.
pub async fn rows(db: &ReadDb, params: &Params) -> Result<Vec<VolunteerHoursRow>, ReportError> {
    let quarter = params.quarter.map(|q| q.to_string());
    let mut rows = Vec::new();
    for raw in db.all(NAME, "quarter").await? {
        let doc: QuarterDoc = serde_json::from_str(&raw)
            .map_err(|e| ReportError::Output(format!("volunteer-hours document: {e}")))?;
        if quarter.as_ref().is_some_and(|q| *q != doc.quarter) {
            continue;
        }
        for (district, themes) in &doc.districts {
            if params.district.is_some_and(|d| d != *district) {
                continue;
            }
            for theme in Theme::ALL {
                if let Some(sums) = themes.get(&theme) {
                    rows.push(VolunteerHoursRow {
                        quarter: doc.quarter.clone(),
                        district_id: *district,
                        theme: theme.code().to_owned(),
                        activities: sums.activities,
                        volunteers: sums.volunteers,
                        volunteer_hours: sums.volunteer_hours,
                    });
                }
            }
        }
    }
    Ok(rows)
}

struct VolunteerHoursReport;

#[async_trait]
impl Report for VolunteerHoursReport {
    fn name(&self) -> &'static str {
        NAME
    }

    fn about(&self) -> &'static str {
        "volunteer hours per theme per quarter, per district (--district, --quarter)"
    }

    fn projectors(&self) -> Vec<Box<dyn Projector>> {
        vec![Box::new(VolunteerHoursProjector::default())]
    }

    async fn produce(&self, db: &ReadDb, params: &Params) -> Result<Output, ReportError> {
        Output::rows(&rows(db, params).await?)
    }
}
