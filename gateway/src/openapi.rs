//! The OpenAPI 3.1 document, generated from the same types the handlers use.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use domain::commands as c;

/// Any command body; which one is named by the path's `{name}`.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: bodies are parsed by `domain::Command::parse`
pub enum AnyCommand {
    RegisterDistrict(c::RegisterDistrict),
    RegisterCommunity(c::RegisterCommunity),
    RegisterUnit(c::RegisterUnit),
    AdmitMemberUnit(c::AdmitMemberUnit),
    WithdrawMemberUnit(c::WithdrawMemberUnit),
    ConveneMeeting(c::ConveneMeeting),
    RecordAttendance(c::RecordAttendance),
    CloseMeeting(c::CloseMeeting),
    ProposeProject(c::ProposeProject),
    ApproveProject(c::ApproveProject),
    ClaimProject(c::ClaimProject),
    WithdrawClaim(c::WithdrawClaim),
    LaunchProject(c::LaunchProject),
    RecordActivity(c::RecordActivity),
    CompleteProject(c::CompleteProject),
    RecordFeedback(c::RecordFeedback),
    CancelProject(c::CancelProject),
    RaiseRequest(c::RaiseRequest),
    ResolveRequest(c::ResolveRequest),
}

/// One appended event in a command response.
#[derive(Serialize, ToSchema)]
pub struct EventRef {
    pub id: uuid::Uuid,
    #[serde(rename = "type")]
    pub event_type: String,
    pub position: i64,
}

/// The success body of a command (mirrors `commands::CommandOutcome`).
#[derive(Serialize, ToSchema)]
pub struct CommandResponse {
    pub command_id: uuid::Uuid,
    pub stream: String,
    pub version: i64,
    pub position: i64,
    pub events: Vec<EventRef>,
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lianxi",
        description = "Event-sourced backend for community joint party-building conferences (社区党建联席会议)."
    ),
    paths(
        crate::routes::commands::send_command,
        crate::routes::tokens::issue_token,
        crate::routes::events::stream_events,
        crate::routes::events::all_events,
        crate::routes::live::live_events,
        crate::routes::trace::trace,
        crate::routes::reads::community_board,
        crate::routes::reads::projections,
        crate::routes::rebuild::rebuild_projection,
        crate::routes::stats::district_stats,
        crate::routes::items::unit,
        crate::routes::items::project,
        crate::routes::items::meeting,
        crate::routes::items::request,
        crate::routes::health::healthz,
        crate::routes::health::readyz,
        crate::routes::health::metrics,
    ),
    components(schemas(AnyCommand, CommandResponse, EventRef, crate::error::Problem, crate::error::FieldError)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;
