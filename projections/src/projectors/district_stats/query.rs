//! The district statistics as `GET /v1/districts/{id}/stats[?quarter=…]` and `lianxi replay
//! --report district-stats` answer them (API.md, "Shapes"), computed at query time from the
//! district's community and quarter documents (three queries, whatever the history's length).
//!
//! How each figure is derived, overall (all quarters) or for one quarter:
//! - the counts (`meetings_*`, `projects_*`, `activities` … `funds_yuan`, `requests_*`,
//!   `by_theme`) add up what is dated in the quarter, or in every quarter;
//! - `member_units`: the units that are members at the end of the quarter (overall: now),
//!   reckoned from admissions and withdrawals by their business time;
//! - `quarters_without_regular_meeting`: overall, the quarters from the community's registration
//!   quarter through the latest quarter any event of the district reached (by business time)
//!   in which no regular meeting sits; for one quarter, 1 when that quarter lies in that span and
//!   has no regular meeting, else 0 — so the quarters add up to the overall figure;
//! - `claim_rate` = claimed / proposed and `completion_rate` = completed / claimed, rounded to 4
//!   decimals, `null` when the divisor is 0. For one quarter they compare what happened in it
//!   (claims in the quarter over proposals in the quarter), so they may exceed 1;
//! - `median_days_to_claim` (proposal → claim, over standing claims dated in the scope) and
//!   `median_days_to_launch` (claim → launch, over launches dated in the scope), in calendar
//!   days in UTC+8, the mean of the middle two for an even count, `null` when there are none;
//! - `mean_rating`: the mean of the feedback ratings dated in the scope, 4 decimals, or `null`.
//!
//! `totals` adds up the communities' counts; its rates, medians and mean are computed again over
//! the whole district (from summed counts and merged histograms), never averaged.

use std::collections::BTreeMap;

use domain::values::{Quarter, Theme};
use serde::Serialize;
use uuid::Uuid;

use super::counters::{Counters, QuarterKey, ThemeCounts};
use super::{CommunityDoc, DistrictDoc, QuarterDoc, NAME};
use crate::readdb::ReadDb;
use crate::ProjectionError;

/// The statistics of one district.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DistrictStats {
    pub district: DistrictRef,
    /// The quarter asked for (`2018Q2`), or `null` for all quarters.
    pub quarter: Option<String>,
    /// The whole district: counts summed, rates, medians and mean computed again.
    pub totals: Figures,
    /// Each community of the district, by name.
    pub communities: Vec<CommunityFigures>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DistrictRef {
    pub id: Uuid,
    pub name: String,
}

/// One community's figures.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct CommunityFigures {
    pub community_id: Uuid,
    pub name: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// The figures, the same in `totals` and per community (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Figures {
    pub meetings_regular: u64,
    pub meetings_extraordinary: u64,
    pub quarters_without_regular_meeting: u64,
    /// Member units at the end of the quarter (overall: now).
    pub member_units: u64,
    pub projects_proposed: u64,
    /// Standing claims: a withdrawn claim no longer counts.
    pub projects_claimed: u64,
    pub projects_launched: u64,
    pub projects_completed: u64,
    pub projects_cancelled: u64,
    /// claimed / proposed, 4 decimals; `null` when nothing was proposed.
    pub claim_rate: Option<f64>,
    /// completed / claimed, 4 decimals; `null` when nothing was claimed.
    pub completion_rate: Option<f64>,
    /// Calendar days from proposal to claim; `null` when nothing was claimed.
    pub median_days_to_claim: Option<f64>,
    /// Calendar days from claim to launch; `null` when nothing was launched.
    pub median_days_to_launch: Option<f64>,
    pub activities: u64,
    pub participants: u64,
    pub volunteers: u64,
    pub volunteer_hours: u64,
    pub beneficiaries: u64,
    pub funds_yuan: u64,
    pub requests_raised: u64,
    pub requests_resolved: u64,
    /// The mean feedback rating (1–5), 4 decimals; `null` when there is none.
    pub mean_rating: Option<f64>,
    pub by_theme: ByTheme,
}

/// Per theme code of DOMAIN.md; all six are always present.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ByTheme {
    pub party_work: ThemeCounts,
    pub shared_resources: ThemeCounts,
    pub civility: ThemeCounts,
    pub service_problems: ThemeCounts,
    pub public_welfare: ThemeCounts,
    pub living_environment: ThemeCounts,
}

impl ByTheme {
    fn slot(&mut self, theme: Theme) -> &mut ThemeCounts {
        match theme {
            Theme::PartyWork => &mut self.party_work,
            Theme::SharedResources => &mut self.shared_resources,
            Theme::Civility => &mut self.civility,
            Theme::ServiceProblems => &mut self.service_problems,
            Theme::PublicWelfare => &mut self.public_welfare,
            Theme::LivingEnvironment => &mut self.living_environment,
        }
    }
}

/// What one community (or the district) adds up to in the scope asked for.
#[derive(Debug, Default)]
struct Tally {
    counters: Counters,
    member_units: u64,
    quarters_without_regular_meeting: u64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.counters.add(&other.counters);
        self.member_units += other.member_units;
        self.quarters_without_regular_meeting += other.quarters_without_regular_meeting;
    }

    /// `community`'s tally overall (`scope` = `None`) or for one quarter, from its `quarters`;
    /// `latest` is the latest quarter any event of the district reached.
    fn of(
        community: &CommunityDoc,
        quarters: &BTreeMap<QuarterKey, Counters>,
        scope: Option<QuarterKey>,
        latest: QuarterKey,
    ) -> Tally {
        let members = |through: Option<QuarterKey>| {
            let delta: i64 = quarters
                .iter()
                .filter(|(q, _)| through.is_none_or(|t| **q <= t))
                .map(|(_, c)| c.member_delta)
                .sum();
            u64::try_from(delta).unwrap_or(0)
        };
        let no_regular = |q: QuarterKey| quarters.get(&q).is_none_or(|c| c.meetings_regular == 0);
        match scope {
            None => {
                let mut counters = Counters::default();
                for c in quarters.values() {
                    counters.add(c);
                }
                let mut without = 0;
                let mut q = community.registered;
                while q <= latest {
                    without += u64::from(no_regular(q));
                    q = q.next();
                }
                Tally {
                    counters,
                    member_units: members(None),
                    quarters_without_regular_meeting: without,
                }
            }
            Some(q) => Tally {
                counters: quarters.get(&q).cloned().unwrap_or_default(),
                member_units: members(Some(q)),
                quarters_without_regular_meeting: u64::from(
                    community.registered <= q && q <= latest && no_regular(q),
                ),
            },
        }
    }

    fn figures(&self) -> Figures {
        let c = &self.counters;
        let mut by_theme = ByTheme::default();
        for (theme, counts) in &c.by_theme {
            *by_theme.slot(*theme) = *counts;
        }
        Figures {
            meetings_regular: c.meetings_regular,
            meetings_extraordinary: c.meetings_extraordinary,
            quarters_without_regular_meeting: self.quarters_without_regular_meeting,
            member_units: self.member_units,
            projects_proposed: c.projects_proposed,
            projects_claimed: c.projects_claimed,
            projects_launched: c.projects_launched,
            projects_completed: c.projects_completed,
            projects_cancelled: c.projects_cancelled,
            claim_rate: ratio(c.projects_claimed, c.projects_proposed),
            completion_rate: ratio(c.projects_completed, c.projects_claimed),
            median_days_to_claim: c.days_to_claim.median(),
            median_days_to_launch: c.days_to_launch.median(),
            activities: c.activities,
            participants: c.participants,
            volunteers: c.volunteers,
            volunteer_hours: c.volunteer_hours,
            beneficiaries: c.beneficiaries,
            funds_yuan: c.funds_yuan,
            requests_raised: c.requests_raised,
            requests_resolved: c.requests_resolved,
            mean_rating: ratio(c.rating_sum, c.ratings),
            by_theme,
        }
    }
}

/// `part / whole` rounded to 4 decimals, `None` when `whole` is 0.
fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| ((part as f64 / whole as f64) * 10_000.0).round() / 10_000.0)
}

fn parse<T: serde::de::DeserializeOwned>(kind: &str, raw: &str) -> Result<T, ProjectionError> {
    serde_json::from_str(raw)
        .map_err(|e| ProjectionError::Storage(format!("district-stats {kind} document: {e}")))
}

/// The statistics of `district`, overall (`quarter` = `None`) or for one quarter; `None` when
/// the district is unknown.
pub async fn stats(
    db: &ReadDb,
    district: Uuid,
    quarter: Option<Quarter>,
) -> Result<Option<DistrictStats>, ProjectionError> {
    let Some(raw) = db.document(NAME, "district", &district.to_string()).await? else {
        return Ok(None);
    };
    let doc: DistrictDoc = parse("district", &raw)?;
    let mut communities: Vec<CommunityDoc> = Vec::new();
    for raw in db
        .children(NAME, "community", &district.to_string())
        .await?
    {
        communities.push(parse("community", &raw)?);
    }
    communities.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    let mut quarters: BTreeMap<Uuid, BTreeMap<QuarterKey, Counters>> = BTreeMap::new();
    for raw in db.children(NAME, "quarter", &district.to_string()).await? {
        let doc: QuarterDoc = parse("quarter", &raw)?;
        quarters
            .entry(doc.community_id)
            .or_default()
            .insert(doc.quarter, doc.counters);
    }
    let none = BTreeMap::new();
    let latest = communities
        .iter()
        .map(|c| c.latest)
        .fold(doc.latest, QuarterKey::max);
    let scope = quarter.map(QuarterKey);
    let mut totals = Tally::default();
    let mut rows = Vec::with_capacity(communities.len());
    for community in &communities {
        let of_community = quarters.get(&community.id).unwrap_or(&none);
        let tally = Tally::of(community, of_community, scope, latest);
        totals.add(&tally);
        rows.push(CommunityFigures {
            community_id: community.id,
            name: community.name.clone(),
            figures: tally.figures(),
        });
    }
    Ok(Some(DistrictStats {
        district: DistrictRef {
            id: doc.id,
            name: doc.name,
        },
        quarter: scope.map(|q| q.to_string()),
        totals: totals.figures(),
        communities: rows,
    }))
}

/// Every district the statistics know, by name (for a report that must pick one).
pub async fn districts(db: &ReadDb) -> Result<Vec<DistrictRef>, ProjectionError> {
    let mut out = Vec::new();
    for raw in db.all(NAME, "district").await? {
        let doc: DistrictDoc = parse("district", &raw)?;
        out.push(DistrictRef {
            id: doc.id,
            name: doc.name,
        });
    }
    out.sort_by(|a, b| (&a.name, a.id).cmp(&(&b.name, b.id)));
    Ok(out)
}
