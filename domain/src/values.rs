//! Validated values: every limit of API.md is a type, so an invalid command cannot be built.
//!
//! Each type deserialises through its checked constructor (`#[serde(try_from)]`), so a JSON body
//! that breaks a limit fails to parse with a message naming the limit, and the command never
//! exists.

use chrono::{DateTime, Datelike, FixedOffset, Offset as _, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

mod schema;

/// The largest count or number of hours an activity may record.
pub const MAX_COUNT: u32 = 1_000_000;
/// The largest sum of yuan an activity may record.
pub const MAX_YUAN: u64 = 1_000_000_000;
/// The longest name or title, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// The longest free text, in characters.
pub const MAX_TEXT_CHARS: usize = 4_000;
/// The most items a list may hold.
pub const MAX_LIST_ITEMS: usize = 100;

fn check_text(value: &str, max_chars: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!(
            "must be at most {max_chars} characters, got {chars}"
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && *c != '\n' && *c != '\t')
    {
        return Err(format!(
            "must not contain control characters (found U+{:04X})",
            c as u32
        ));
    }
    Ok(())
}

/// A name or title: 1 to 200 characters, not blank, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    pub fn parse(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        if value.trim().is_empty() {
            return Err("must not be blank".to_owned());
        }
        if value.contains('\n') || value.contains('\t') {
            return Err("must be a single line".to_owned());
        }
        check_text(&value, MAX_NAME_CHARS)?;
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl From<Name> for String {
    fn from(value: Name) -> Self {
        value.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text: up to 4,000 characters; newline and tab are the only control characters allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Text(String);

impl Text {
    pub fn parse(value: impl Into<String>) -> Result<Self, String> {
        let value = value.into();
        check_text(&value, MAX_TEXT_CHARS)?;
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Text {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl From<Text> for String {
    fn from(value: Text) -> Self {
        value.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A list of at most 100 items.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<T>", into = "Vec<T>")]
#[serde(bound(
    deserialize = "T: Deserialize<'de> + Clone",
    serialize = "T: Serialize + Clone"
))]
pub struct List<T>(Vec<T>);

impl<T> List<T> {
    pub fn parse(items: Vec<T>) -> Result<Self, String> {
        if items.len() > MAX_LIST_ITEMS {
            return Err(format!(
                "must hold at most {MAX_LIST_ITEMS} items, got {}",
                items.len()
            ));
        }
        Ok(Self(items))
    }
    pub fn items(&self) -> &[T] {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> TryFrom<Vec<T>> for List<T> {
    type Error = String;
    fn try_from(items: Vec<T>) -> Result<Self, String> {
        Self::parse(items)
    }
}

impl<T> From<List<T>> for Vec<T> {
    fn from(value: List<T>) -> Self {
        value.0
    }
}

/// A count of people or hours on an activity: 0 to 1,000,000.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "u32")]
pub struct Count(u32);

impl Count {
    pub fn parse(value: i64) -> Result<Self, String> {
        if !(0..=i64::from(MAX_COUNT)).contains(&value) {
            return Err(format!("must be between 0 and {MAX_COUNT}, got {value}"));
        }
        // In range by the check above.
        Ok(Self(value as u32))
    }
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Count {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl From<Count> for u32 {
    fn from(value: Count) -> Self {
        value.0
    }
}

/// A sum of money in whole yuan: 0 to 1,000,000,000. Integers only, never floating point.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(try_from = "i64", into = "u64")]
pub struct Yuan(u64);

impl Yuan {
    pub fn parse(value: i64) -> Result<Self, String> {
        if !(0..=MAX_YUAN as i64).contains(&value) {
            return Err(format!("must be between 0 and {MAX_YUAN}, got {value}"));
        }
        Ok(Self(value as u64))
    }
    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<i64> for Yuan {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl From<Yuan> for u64 {
    fn from(value: Yuan) -> Self {
        value.0
    }
}

/// Residents' feedback on a completed project: 1 to 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Rating(u8);

impl Rating {
    pub fn parse(value: i64) -> Result<Self, String> {
        if !(1..=5).contains(&value) {
            return Err(format!("must be between 1 and 5, got {value}"));
        }
        Ok(Self(value as u8))
    }
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Rating {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        Self::parse(value)
    }
}

impl From<Rating> for u8 {
    fn from(value: Rating) -> Self {
        value.0
    }
}

/// A business time (when a meeting sits, when an activity happened): RFC 3339 with an offset,
/// its date between the years 2000 and 2100.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, format = DateTime)]
pub struct BusinessTime(DateTime<FixedOffset>);

impl BusinessTime {
    pub fn parse(value: &str) -> Result<Self, String> {
        let time = DateTime::parse_from_rfc3339(value)
            .map_err(|e| format!("must be an RFC 3339 time with offset: {e}"))?;
        Self::from_datetime(time)
    }
    pub fn from_datetime(time: DateTime<FixedOffset>) -> Result<Self, String> {
        if !(2000..=2100).contains(&time.year()) {
            return Err(format!(
                "must be between the years 2000 and 2100, got {}",
                time.year()
            ));
        }
        Ok(Self(time))
    }
    /// A server-side time (the recording time) as a business time.
    pub fn from_utc(time: DateTime<Utc>) -> Self {
        Self(time.fixed_offset())
    }
    pub fn get(self) -> DateTime<FixedOffset> {
        self.0
    }
    /// The calendar quarter of this time's date in China Standard Time.
    pub fn quarter(self) -> Quarter {
        Quarter::of(self.0)
    }
}

impl TryFrom<String> for BusinessTime {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Self::parse(&value)
    }
}

impl From<BusinessTime> for String {
    fn from(value: BusinessTime) -> Self {
        value.0.to_rfc3339()
    }
}

/// A calendar quarter such as `2018Q2`, reckoned in China Standard Time (UTC+8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quarter {
    pub year: i32,
    /// 1 to 4.
    pub quarter: u8,
}

impl Quarter {
    /// The quarter of `time`'s date in UTC+8.
    pub fn of<Tz: chrono::TimeZone>(time: DateTime<Tz>) -> Self {
        // UTC+8 is a valid offset: 8 hours is well within chrono's ±24 h.
        let cst = FixedOffset::east_opt(8 * 3600).unwrap_or_else(|| Utc.fix());
        let local = time.with_timezone(&cst);
        Self {
            year: local.year(),
            quarter: (local.month0() / 3 + 1) as u8,
        }
    }

    /// Parses `2018Q2`.
    pub fn parse(value: &str) -> Result<Self, String> {
        let bad = || format!("must be a quarter like 2018Q2, got {value:?}");
        let (year, quarter) = value.split_once('Q').ok_or_else(bad)?;
        let year: i32 = year.parse().map_err(|_| bad())?;
        let quarter: u8 = quarter.parse().map_err(|_| bad())?;
        if !(2000..=2100).contains(&year) || !(1..=4).contains(&quarter) {
            return Err(bad());
        }
        Ok(Self { year, quarter })
    }

    /// The quarter after this one.
    pub fn next(self) -> Self {
        if self.quarter == 4 {
            Self {
                year: self.year + 1,
                quarter: 1,
            }
        } else {
            Self {
                year: self.year,
                quarter: self.quarter + 1,
            }
        }
    }
}

impl fmt::Display for Quarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}Q{}", self.year, self.quarter)
    }
}

/// The six joint themes (六联) a project serves.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    /// 党建工作联做
    PartyWork,
    /// 党建资源联享
    SharedResources,
    /// 精神文明联创
    Civility,
    /// 服务难题联解
    ServiceProblems,
    /// 公益事业联办
    PublicWelfare,
    /// 生活环境联建
    LivingEnvironment,
}

impl Theme {
    pub const ALL: [Theme; 6] = [
        Theme::PartyWork,
        Theme::SharedResources,
        Theme::Civility,
        Theme::ServiceProblems,
        Theme::PublicWelfare,
        Theme::LivingEnvironment,
    ];

    /// The snake_case code of DOMAIN.md.
    pub fn code(self) -> &'static str {
        match self {
            Theme::PartyWork => "party_work",
            Theme::SharedResources => "shared_resources",
            Theme::Civility => "civility",
            Theme::ServiceProblems => "service_problems",
            Theme::PublicWelfare => "public_welfare",
            Theme::LivingEnvironment => "living_environment",
        }
    }
}

/// How a unit joins a community's conference.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MemberKind {
    /// 辖区单位: located in the jurisdiction.
    Jurisdiction,
    /// 双报到单位: its party members also report to the community.
    DoubleReport,
    /// 社区社会组织: a community social organisation.
    SocialOrganisation,
}

/// Regular (once a quarter) or extraordinary (any time, for a major matter).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MeetingKind {
    Regular,
    Extraordinary,
}

#[cfg(test)]
mod tests;
