//! The commands of DOMAIN.md, exactly as apps send them (API.md, "Command bodies").
//!
//! Fields are validated types, unknown fields are refused, and every command may carry
//! `occurred_at`, its business time. A creating command's own id is optional; the command
//! handler fills it in with [`Command::assign_ids`] before deciding.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::*;
use crate::values::*;

/// Registers a district (街道).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterDistrict {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub district_id: Option<DistrictId>,
    pub name: Name,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Registers a community of a registered district, with its party committee.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterCommunity {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub community_id: Option<CommunityId>,
    pub district_id: DistrictId,
    pub name: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committee: Option<Name>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Registers a unit's party organisation in a district.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterUnit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_id: Option<UnitId>,
    pub district_id: DistrictId,
    pub name: Name,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Admits a registered unit to a community's joint conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdmitMemberUnit {
    pub community_id: CommunityId,
    pub unit_id: UnitId,
    pub kind: MemberKind,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Takes a member unit off a community's joint conference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawMemberUnit {
    pub community_id: CommunityId,
    pub unit_id: UnitId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Convenes a meeting of a community's joint conference; `occurred_at` is when it sits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConveneMeeting {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<MeetingId>,
    pub community_id: CommunityId,
    pub kind: MeetingKind,
    pub title: Name,
    pub agenda: List<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue: Option<Name>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Records which member units attended a meeting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordAttendance {
    pub meeting_id: MeetingId,
    pub unit_ids: List<UnitId>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Closes a meeting with the resolutions it adopted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseMeeting {
    pub meeting_id: MeetingId,
    pub resolutions: List<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Proposes a project from residents' needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeProject {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<ProjectId>,
    pub community_id: CommunityId,
    pub title: Name,
    pub theme: Theme,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Approves a proposed project at a meeting of the same community.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveProject {
    pub project_id: ProjectId,
    pub meeting_id: MeetingId,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// A member unit claims a project and commits to deliver it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimProject {
    pub project_id: ProjectId,
    pub unit_id: UnitId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_id: Option<MeetingId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitment: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// The claimant gives a claimed project back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawClaim {
    pub project_id: ProjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// The claimant starts delivering the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchProject {
    pub project_id: ProjectId,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Records one activity of a launched project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordActivity {
    pub project_id: ProjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activity_id: Option<ActivityId>,
    pub title: Name,
    pub participants: Count,
    #[serde(default)]
    pub volunteers: Count,
    #[serde(default)]
    pub volunteer_hours: Count,
    #[serde(default)]
    pub beneficiaries: Count,
    #[serde(default)]
    pub funds_yuan: Yuan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Marks a launched project delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteProject {
    pub project_id: ProjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Records residents' feedback on a completed project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordFeedback {
    pub project_id: ProjectId,
    pub rating: Rating,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Cancels a project that is not completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelProject {
    pub project_id: ProjectId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// A member unit asks the community for help (the two-way part of 双向互动).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RaiseRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub community_id: CommunityId,
    pub unit_id: UnitId,
    pub title: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub need: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// The community resolves a unit's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRequest {
    pub request_id: RequestId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Text>,
    /// The business time; defaults to the time of recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<BusinessTime>,
}

/// Any command of DOMAIN.md.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    RegisterDistrict(RegisterDistrict),
    RegisterCommunity(RegisterCommunity),
    RegisterUnit(RegisterUnit),
    AdmitMemberUnit(AdmitMemberUnit),
    WithdrawMemberUnit(WithdrawMemberUnit),
    ConveneMeeting(ConveneMeeting),
    RecordAttendance(RecordAttendance),
    CloseMeeting(CloseMeeting),
    ProposeProject(ProposeProject),
    ApproveProject(ApproveProject),
    ClaimProject(ClaimProject),
    WithdrawClaim(WithdrawClaim),
    LaunchProject(LaunchProject),
    RecordActivity(RecordActivity),
    CompleteProject(CompleteProject),
    RecordFeedback(RecordFeedback),
    CancelProject(CancelProject),
    RaiseRequest(RaiseRequest),
    ResolveRequest(ResolveRequest),
}

/// Every command name, as `POST /v1/commands/{CommandName}` spells it.
pub const COMMAND_NAMES: [&str; 19] = [
    "RegisterDistrict",
    "RegisterCommunity",
    "RegisterUnit",
    "AdmitMemberUnit",
    "WithdrawMemberUnit",
    "ConveneMeeting",
    "RecordAttendance",
    "CloseMeeting",
    "ProposeProject",
    "ApproveProject",
    "ClaimProject",
    "WithdrawClaim",
    "LaunchProject",
    "RecordActivity",
    "CompleteProject",
    "RecordFeedback",
    "CancelProject",
    "RaiseRequest",
    "ResolveRequest",
];

/// Why a command body could not become a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No command has this name.
    #[error("unknown command {0:?}")]
    UnknownCommand(String),
    /// The body is not JSON, or not an object (maps to 400 `invalid_body`).
    #[error("{0}")]
    Syntax(String),
    /// The body is JSON but a field is missing, unknown, of the wrong type or out of its limits
    /// (maps to 422 `invalid_field`); `field` is the JSON path (`agenda[2]`).
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

fn parse_as<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ParseError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match value {
        Ok(value) => {
            de.end().map_err(|e| ParseError::Syntax(e.to_string()))?;
            Ok(value)
        }
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = strip_position(&inner.to_string());
                    // A missing or doubled field is reported at its parent; name the field itself.
                    let field = match (path.as_str(), missing_field(&message)) {
                        (".", Some(missing)) => missing.to_owned(),
                        (".", None) => String::new(),
                        (_, Some(missing)) => format!("{path}.{missing}"),
                        (_, None) => path,
                    };
                    Err(ParseError::Field { field, message })
                }
                _ => Err(ParseError::Syntax(inner.to_string())),
            }
        }
    }
}

/// The field named by serde's "missing field `name`" or "duplicate field `name`" message.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")
        .or_else(|| message.strip_prefix("duplicate field `"))
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field)
}

/// serde_json appends " at line L column C" to data errors; the field path says it better.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

impl Command {
    /// Parses a JSON body as the command called `name`.
    pub fn parse(name: &str, body: &[u8]) -> Result<Command, ParseError> {
        let body_value: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| ParseError::Syntax(e.to_string()))?;
        if !body_value.is_object() {
            return Err(ParseError::Syntax(
                "the body must be a JSON object".to_owned(),
            ));
        }
        Ok(match name {
            "RegisterDistrict" => Command::RegisterDistrict(parse_as(body)?),
            "RegisterCommunity" => Command::RegisterCommunity(parse_as(body)?),
            "RegisterUnit" => Command::RegisterUnit(parse_as(body)?),
            "AdmitMemberUnit" => Command::AdmitMemberUnit(parse_as(body)?),
            "WithdrawMemberUnit" => Command::WithdrawMemberUnit(parse_as(body)?),
            "ConveneMeeting" => Command::ConveneMeeting(parse_as(body)?),
            "RecordAttendance" => Command::RecordAttendance(parse_as(body)?),
            "CloseMeeting" => Command::CloseMeeting(parse_as(body)?),
            "ProposeProject" => Command::ProposeProject(parse_as(body)?),
            "ApproveProject" => Command::ApproveProject(parse_as(body)?),
            "ClaimProject" => Command::ClaimProject(parse_as(body)?),
            "WithdrawClaim" => Command::WithdrawClaim(parse_as(body)?),
            "LaunchProject" => Command::LaunchProject(parse_as(body)?),
            "RecordActivity" => Command::RecordActivity(parse_as(body)?),
            "CompleteProject" => Command::CompleteProject(parse_as(body)?),
            "RecordFeedback" => Command::RecordFeedback(parse_as(body)?),
            "CancelProject" => Command::CancelProject(parse_as(body)?),
            "RaiseRequest" => Command::RaiseRequest(parse_as(body)?),
            "ResolveRequest" => Command::ResolveRequest(parse_as(body)?),
            other => return Err(ParseError::UnknownCommand(other.to_owned())),
        })
    }

    /// The command's name, as in DOMAIN.md.
    pub fn name(&self) -> &'static str {
        match self {
            Command::RegisterDistrict(_) => "RegisterDistrict",
            Command::RegisterCommunity(_) => "RegisterCommunity",
            Command::RegisterUnit(_) => "RegisterUnit",
            Command::AdmitMemberUnit(_) => "AdmitMemberUnit",
            Command::WithdrawMemberUnit(_) => "WithdrawMemberUnit",
            Command::ConveneMeeting(_) => "ConveneMeeting",
            Command::RecordAttendance(_) => "RecordAttendance",
            Command::CloseMeeting(_) => "CloseMeeting",
            Command::ProposeProject(_) => "ProposeProject",
            Command::ApproveProject(_) => "ApproveProject",
            Command::ClaimProject(_) => "ClaimProject",
            Command::WithdrawClaim(_) => "WithdrawClaim",
            Command::LaunchProject(_) => "LaunchProject",
            Command::RecordActivity(_) => "RecordActivity",
            Command::CompleteProject(_) => "CompleteProject",
            Command::RecordFeedback(_) => "RecordFeedback",
            Command::CancelProject(_) => "CancelProject",
            Command::RaiseRequest(_) => "RaiseRequest",
            Command::ResolveRequest(_) => "ResolveRequest",
        }
    }

    /// The business time the command carries, if any.
    pub fn occurred_at(&self) -> Option<BusinessTime> {
        match self {
            Command::RegisterDistrict(c) => c.occurred_at,
            Command::RegisterCommunity(c) => c.occurred_at,
            Command::RegisterUnit(c) => c.occurred_at,
            Command::AdmitMemberUnit(c) => c.occurred_at,
            Command::WithdrawMemberUnit(c) => c.occurred_at,
            Command::ConveneMeeting(c) => c.occurred_at,
            Command::RecordAttendance(c) => c.occurred_at,
            Command::CloseMeeting(c) => c.occurred_at,
            Command::ProposeProject(c) => c.occurred_at,
            Command::ApproveProject(c) => c.occurred_at,
            Command::ClaimProject(c) => c.occurred_at,
            Command::WithdrawClaim(c) => c.occurred_at,
            Command::LaunchProject(c) => c.occurred_at,
            Command::RecordActivity(c) => c.occurred_at,
            Command::CompleteProject(c) => c.occurred_at,
            Command::RecordFeedback(c) => c.occurred_at,
            Command::CancelProject(c) => c.occurred_at,
            Command::RaiseRequest(c) => c.occurred_at,
            Command::ResolveRequest(c) => c.occurred_at,
        }
    }

    /// Fills in a creating command's missing id (and a new activity's id) from `new_id`.
    pub fn assign_ids(&mut self, mut new_id: impl FnMut() -> Uuid) {
        match self {
            Command::RegisterDistrict(c) => {
                c.district_id.get_or_insert_with(|| DistrictId(new_id()));
            }
            Command::RegisterCommunity(c) => {
                c.community_id.get_or_insert_with(|| CommunityId(new_id()));
            }
            Command::RegisterUnit(c) => {
                c.unit_id.get_or_insert_with(|| UnitId(new_id()));
            }
            Command::ConveneMeeting(c) => {
                c.meeting_id.get_or_insert_with(|| MeetingId(new_id()));
            }
            Command::ProposeProject(c) => {
                c.project_id.get_or_insert_with(|| ProjectId(new_id()));
            }
            Command::RaiseRequest(c) => {
                c.request_id.get_or_insert_with(|| RequestId(new_id()));
            }
            Command::RecordActivity(c) => {
                c.activity_id.get_or_insert_with(|| ActivityId(new_id()));
            }
            _ => {}
        }
    }

    /// The stream this command appends to. A creating command must have had its id assigned.
    pub fn target_stream(&self) -> Option<String> {
        Some(match self {
            Command::RegisterDistrict(c) => c.district_id?.stream(),
            Command::RegisterCommunity(c) => c.community_id?.stream(),
            Command::RegisterUnit(c) => c.unit_id?.stream(),
            Command::AdmitMemberUnit(c) => c.community_id.stream(),
            Command::WithdrawMemberUnit(c) => c.community_id.stream(),
            Command::ConveneMeeting(c) => c.meeting_id?.stream(),
            Command::RecordAttendance(c) => c.meeting_id.stream(),
            Command::CloseMeeting(c) => c.meeting_id.stream(),
            Command::ProposeProject(c) => c.project_id?.stream(),
            Command::ApproveProject(c) => c.project_id.stream(),
            Command::ClaimProject(c) => c.project_id.stream(),
            Command::WithdrawClaim(c) => c.project_id.stream(),
            Command::LaunchProject(c) => c.project_id.stream(),
            Command::RecordActivity(c) => c.project_id.stream(),
            Command::CompleteProject(c) => c.project_id.stream(),
            Command::RecordFeedback(c) => c.project_id.stream(),
            Command::CancelProject(c) => c.project_id.stream(),
            Command::RaiseRequest(c) => c.request_id?.stream(),
            Command::ResolveRequest(c) => c.request_id.stream(),
        })
    }
}

macro_rules! into_command {
    ($($name:ident),* $(,)?) => {
        $(
            impl From<$name> for Command {
                fn from(command: $name) -> Self {
                    Command::$name(command)
                }
            }
        )*
    };
}

into_command!(
    RegisterDistrict,
    RegisterCommunity,
    RegisterUnit,
    AdmitMemberUnit,
    WithdrawMemberUnit,
    ConveneMeeting,
    RecordAttendance,
    CloseMeeting,
    ProposeProject,
    ApproveProject,
    ClaimProject,
    WithdrawClaim,
    LaunchProject,
    RecordActivity,
    CompleteProject,
    RecordFeedback,
    CancelProject,
    RaiseRequest,
    ResolveRequest,
);
