//! The values the district statistics keep per community and quarter: counters, day-count
//! histograms for medians, and quarters as document keys.
//!
//! Everything here is small, ordered and additive: a quarter's [`Counters`] add up into a
//! community's overall figures and a community's into the district's, and medians are taken
//! from merged [`Histogram`]s rather than from lists of projects, so a document stays the same
//! size however many projects it counts. Maps are `BTreeMap`s, so the same log always gives the
//! same bytes.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, FixedOffset};
use domain::values::{Quarter, Theme};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A calendar quarter (China Standard Time) as a document key: `"2018Q2"` in JSON, ordered in
/// time. Unlike [`Quarter::parse`] it reads back any year, so a document never fails to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QuarterKey(pub Quarter);

impl QuarterKey {
    /// The quarter of a business time.
    pub fn of(time: DateTime<FixedOffset>) -> Self {
        Self(Quarter::of(time))
    }

    /// The quarter after this one.
    pub fn next(self) -> Self {
        Self(self.0.next())
    }
}

impl Ord for QuarterKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.0.year, self.0.quarter).cmp(&(other.0.year, other.0.quarter))
    }
}

impl PartialOrd for QuarterKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for QuarterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for QuarterKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl QuarterKey {
    /// `2018Q2`, of any year.
    pub fn parse(text: &str) -> Option<Self> {
        let (year, quarter) = text.split_once('Q')?;
        let year: i32 = year.parse().ok()?;
        let quarter: u8 = quarter.parse().ok()?;
        (1..=4)
            .contains(&quarter)
            .then_some(Self(Quarter { year, quarter }))
    }
}

impl<'de> Deserialize<'de> for QuarterKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("not a quarter: {text:?}")))
    }
}

/// The calendar day of a business time in China Standard Time, as a day number, so that "days
/// from proposal to claim" counts calendar days the way quarters do.
pub fn day_number(time: DateTime<FixedOffset>) -> i32 {
    let cst = FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| *time.offset());
    time.with_timezone(&cst).date_naive().num_days_from_ce()
}

/// How many things took how many days: `days → count`. Medians come from it without keeping
/// one entry per project.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Histogram(BTreeMap<i64, u32>);

impl Histogram {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, days: i64) {
        *self.0.entry(days).or_insert(0) += 1;
    }

    /// Takes one `days` back out (a withdrawn claim); nothing happens when there is none.
    pub fn remove(&mut self, days: i64) {
        if let Some(count) = self.0.get_mut(&days) {
            *count -= 1;
            if *count == 0 {
                self.0.remove(&days);
            }
        }
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (days, count) in &other.0 {
            *self.0.entry(*days).or_insert(0) += count;
        }
    }

    /// The median number of days (the mean of the two middle ones for an even count), or
    /// `None` when the histogram is empty.
    pub fn median(&self) -> Option<f64> {
        let total: u64 = self.0.values().map(|c| u64::from(*c)).sum();
        if total == 0 {
            return None;
        }
        let (low, high) = ((total - 1) / 2, total / 2);
        let (mut low_value, mut high_value) = (None, None);
        let mut seen = 0u64;
        for (days, count) in &self.0 {
            let next = seen + u64::from(*count);
            if low_value.is_none() && low < next {
                low_value = Some(*days);
            }
            if high < next {
                high_value = Some(*days);
                break;
            }
            seen = next;
        }
        let (low, high) = (low_value?, high_value?);
        Some((low as f64 + high as f64) / 2.0)
    }
}

/// What a theme's projects did in a quarter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ThemeCounts {
    pub proposed: u64,
    pub claimed: u64,
    pub completed: u64,
}

impl ThemeCounts {
    fn add(&mut self, other: &ThemeCounts) {
        self.proposed += other.proposed;
        self.claimed += other.claimed;
        self.completed += other.completed;
    }

    fn is_zero(&self) -> bool {
        *self == ThemeCounts::default()
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

fn is_zero_i64(value: &i64) -> bool {
    *value == 0
}

/// What happened in one community in one quarter (by business time); every field adds up
/// across quarters and communities. Zero fields are left out of the stored document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Regular meetings sitting in the quarter.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub meetings_regular: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub meetings_extraordinary: u64,
    /// Admissions minus withdrawals of member units dated in the quarter.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub member_delta: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub projects_proposed: u64,
    /// Claims dated in the quarter that still stand (a withdrawn claim is taken back out).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub projects_claimed: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub projects_launched: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub projects_completed: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub projects_cancelled: u64,
    /// Days from proposal to claim, for the standing claims dated in the quarter.
    #[serde(default, skip_serializing_if = "Histogram::is_empty")]
    pub days_to_claim: Histogram,
    /// Days from claim to launch, for the launches dated in the quarter.
    #[serde(default, skip_serializing_if = "Histogram::is_empty")]
    pub days_to_launch: Histogram,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub activities: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub participants: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub volunteers: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub volunteer_hours: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub beneficiaries: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub funds_yuan: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests_raised: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub requests_resolved: u64,
    /// The sum and the number of feedback ratings, for the mean.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rating_sum: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ratings: u64,
    /// Only the themes with something to count.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_theme: BTreeMap<Theme, ThemeCounts>,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.meetings_regular += other.meetings_regular;
        self.meetings_extraordinary += other.meetings_extraordinary;
        self.member_delta += other.member_delta;
        self.projects_proposed += other.projects_proposed;
        self.projects_claimed += other.projects_claimed;
        self.projects_launched += other.projects_launched;
        self.projects_completed += other.projects_completed;
        self.projects_cancelled += other.projects_cancelled;
        self.days_to_claim.merge(&other.days_to_claim);
        self.days_to_launch.merge(&other.days_to_launch);
        self.activities += other.activities;
        self.participants += other.participants;
        self.volunteers += other.volunteers;
        self.volunteer_hours += other.volunteer_hours;
        self.beneficiaries += other.beneficiaries;
        self.funds_yuan += other.funds_yuan;
        self.requests_raised += other.requests_raised;
        self.requests_resolved += other.requests_resolved;
        self.rating_sum += other.rating_sum;
        self.ratings += other.ratings;
        for (theme, counts) in &other.by_theme {
            self.by_theme.entry(*theme).or_default().add(counts);
        }
    }

    /// The counts of `theme`, created when absent.
    pub fn theme(&mut self, theme: Theme) -> &mut ThemeCounts {
        self.by_theme.entry(theme).or_default()
    }

    /// Takes a withdrawn claim of a `theme` project, `days` after its proposal, back out.
    pub fn withdraw_claim(&mut self, theme: Theme, days: i64) {
        self.projects_claimed = self.projects_claimed.saturating_sub(1);
        self.days_to_claim.remove(days);
        let counts = self.theme(theme);
        counts.claimed = counts.claimed.saturating_sub(1);
        if counts.is_zero() {
            self.by_theme.remove(&theme);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(days: &[i64]) -> Histogram {
        let mut h = Histogram::default();
        for d in days {
            h.add(*d);
        }
        h
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_one() {
        assert_eq!(histogram(&[9, 1, 4]).median(), Some(4.0));
        assert_eq!(histogram(&[2, 2, 2, 7, 30]).median(), Some(2.0));
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(histogram(&[1, 4]).median(), Some(2.5));
        assert_eq!(histogram(&[3, 3, 8, 8]).median(), Some(5.5));
        assert_eq!(histogram(&[5, 5]).median(), Some(5.0));
    }

    #[test]
    fn an_empty_histogram_has_no_median() {
        assert_eq!(Histogram::default().median(), None);
        let mut h = histogram(&[3]);
        h.remove(3);
        assert!(h.is_empty());
        assert_eq!(h.median(), None);
    }

    #[test]
    fn quarters_round_trip_and_order_in_time() {
        let q = |text: &str| -> QuarterKey {
            serde_json::from_value(serde_json::json!(text)).expect("a quarter")
        };
        assert!(q("2018Q4") < q("2019Q1"));
        assert_eq!(q("2018Q4").next(), q("2019Q1"));
        assert_eq!(
            serde_json::to_value(q("2101Q1")).expect("serialises"),
            serde_json::json!("2101Q1")
        );
        assert!(serde_json::from_value::<QuarterKey>(serde_json::json!("2018Q5")).is_err());
    }

    #[test]
    fn a_day_number_counts_calendar_days_in_china_standard_time() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).expect("a time");
        // 23:30 and 00:30 the next day in UTC+8 are one calendar day apart.
        assert_eq!(
            day_number(t("2018-04-25T00:30:00+08:00")) - day_number(t("2018-04-24T23:30:00+08:00")),
            1
        );
        assert_eq!(
            day_number(t("2018-04-24T16:30:00Z")),
            day_number(t("2018-04-25T00:30:00+08:00"))
        );
    }
}
