//! One-line, human summaries of events, for the board's recent feed and the supervisors' trace.
//!
//! Names come from a lookup the caller provides (stream id → display name); where a name is not
//! known the summary falls back to the first block of the id, so it is always printable.

use domain::Event;

/// Looks up the display name of an aggregate by its stream id (`unit-…`, `project-…`).
pub trait Names {
    fn name_of(&self, stream: &str) -> Option<String>;
}

/// No names known: ids only.
pub struct NoNames;

impl Names for NoNames {
    fn name_of(&self, _stream: &str) -> Option<String> {
        None
    }
}

fn label(names: &dyn Names, stream: String) -> String {
    match names.name_of(&stream) {
        Some(name) => format!("«{name}»"),
        None => {
            let (kind, id) = stream.split_once('-').unwrap_or(("", stream.as_str()));
            let short = id.split('-').next().unwrap_or(id);
            format!("{kind} {short}…")
        }
    }
}

/// A one-line summary of `event`.
pub fn summarize(event: &Event, names: &dyn Names) -> String {
    match event {
        Event::DistrictRegistered(e) => format!("district «{}» registered", e.name),
        Event::CommunityRegistered(e) => format!(
            "community «{}» registered in {}",
            e.name,
            label(names, e.district_id.stream())
        ),
        Event::UnitRegistered(e) => format!("unit «{}» registered", e.name),
        Event::MemberUnitAdmitted(e) => format!(
            "{} admitted to {} as {}",
            label(names, e.unit_id.stream()),
            label(names, e.community_id.stream()),
            serde_json::to_value(e.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default()
        ),
        Event::MemberUnitWithdrawn(e) => format!(
            "{} withdrew from {}",
            label(names, e.unit_id.stream()),
            label(names, e.community_id.stream())
        ),
        Event::MeetingConvened(e) => format!(
            "{} meeting «{}» convened",
            match e.kind {
                domain::values::MeetingKind::Regular => "regular",
                domain::values::MeetingKind::Extraordinary => "extraordinary",
            },
            e.title
        ),
        Event::AttendanceRecorded(e) => format!(
            "{} unit(s) recorded as attending {}",
            e.unit_ids.len(),
            label(names, e.meeting_id.stream())
        ),
        Event::MeetingClosed(e) => format!(
            "{} closed with {} resolution(s)",
            label(names, e.meeting_id.stream()),
            e.resolutions.len()
        ),
        Event::ProjectProposed(e) => {
            format!("project «{}» proposed ({})", e.title, e.theme.code())
        }
        Event::ProjectApproved(e) => format!(
            "{} approved at {}",
            label(names, e.project_id.stream()),
            label(names, e.meeting_id.stream())
        ),
        Event::ProjectClaimed(e) => format!(
            "{} claimed {}",
            label(names, e.unit_id.stream()),
            label(names, e.project_id.stream())
        ),
        Event::ClaimWithdrawn(e) => format!(
            "{} withdrew its claim on {}",
            label(names, e.unit_id.stream()),
            label(names, e.project_id.stream())
        ),
        Event::ProjectLaunched(e) => format!(
            "{} launched {}",
            label(names, e.unit_id.stream()),
            label(names, e.project_id.stream())
        ),
        Event::ActivityRecorded(e) => format!(
            "activity «{}» on {}: {} participants, {} volunteers, {} beneficiaries, {} yuan",
            e.title,
            label(names, e.project_id.stream()),
            e.participants.get(),
            e.volunteers.get(),
            e.beneficiaries.get(),
            e.funds_yuan.get()
        ),
        Event::ProjectCompleted(e) => format!("{} completed", label(names, e.project_id.stream())),
        Event::FeedbackRecorded(e) => format!(
            "feedback {}/5 on {}",
            e.rating.get(),
            label(names, e.project_id.stream())
        ),
        Event::ProjectCancelled(e) => format!("{} cancelled", label(names, e.project_id.stream())),
        Event::RequestRaised(e) => format!(
            "{} asked {} for help: «{}»",
            label(names, e.unit_id.stream()),
            label(names, e.community_id.stream()),
            e.title
        ),
        Event::RequestResolved(e) => {
            format!("{} resolved", label(names, e.request_id.stream()))
        }
    }
}
