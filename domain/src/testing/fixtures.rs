//! Fixed ids and sample events for specifications, so tests read as the story they tell.
//!
//! Every id is a constant UUID, which keeps expected events and snapshots stable. The sample
//! events carry plausible values from the report (赵镇街道, 十里社区, …); tests that care
//! about a value build the event themselves.

use uuid::Uuid;

use crate::events::*;
use crate::ids::*;
use crate::values::*;

pub const DISTRICT: DistrictId =
    DistrictId(Uuid::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0001));
pub const OTHER_DISTRICT: DistrictId =
    DistrictId(Uuid::from_u128(0x0000_0001_0000_4000_8000_0000_0000_0002));
pub const COMMUNITY: CommunityId =
    CommunityId(Uuid::from_u128(0x0000_0002_0000_4000_8000_0000_0000_0001));
pub const OTHER_COMMUNITY: CommunityId =
    CommunityId(Uuid::from_u128(0x0000_0002_0000_4000_8000_0000_0000_0002));
pub const UNIT: UnitId = UnitId(Uuid::from_u128(0x0000_0003_0000_4000_8000_0000_0000_0001));
pub const OTHER_UNIT: UnitId = UnitId(Uuid::from_u128(0x0000_0003_0000_4000_8000_0000_0000_0002));
pub const MEETING: MeetingId =
    MeetingId(Uuid::from_u128(0x0000_0004_0000_4000_8000_0000_0000_0001));
pub const OTHER_MEETING: MeetingId =
    MeetingId(Uuid::from_u128(0x0000_0004_0000_4000_8000_0000_0000_0002));
pub const PROJECT: ProjectId =
    ProjectId(Uuid::from_u128(0x0000_0005_0000_4000_8000_0000_0000_0001));
pub const REQUEST: RequestId =
    RequestId(Uuid::from_u128(0x0000_0006_0000_4000_8000_0000_0000_0001));
pub const ACTIVITY: ActivityId =
    ActivityId(Uuid::from_u128(0x0000_0007_0000_4000_8000_0000_0000_0001));

/// A valid [`Name`], or a panic naming the bad fixture.
#[track_caller]
pub fn name(value: &str) -> Name {
    Name::parse(value).unwrap_or_else(|e| panic!("fixture name {value:?}: {e}"))
}

/// A valid [`Text`], or a panic naming the bad fixture.
#[track_caller]
pub fn text(value: &str) -> Text {
    Text::parse(value).unwrap_or_else(|e| panic!("fixture text {value:?}: {e}"))
}

/// A valid [`List`], or a panic naming the bad fixture.
#[track_caller]
pub fn list<T>(items: Vec<T>) -> List<T> {
    List::parse(items).unwrap_or_else(|e| panic!("fixture list: {e}"))
}

pub fn district_registered(district: DistrictId) -> Event {
    Event::DistrictRegistered(DistrictRegistered {
        district_id: district,
        name: name("赵镇街道"),
    })
}

pub fn community_registered(community: CommunityId, district: DistrictId) -> Event {
    Event::CommunityRegistered(CommunityRegistered {
        community_id: community,
        district_id: district,
        name: name("十里社区"),
        committee: Some(name("十里社区党委")),
    })
}

pub fn unit_registered(unit: UnitId, district: DistrictId) -> Event {
    Event::UnitRegistered(UnitRegistered {
        unit_id: unit,
        district_id: district,
        name: name("县疾控中心党支部"),
    })
}

pub fn member_unit_admitted(community: CommunityId, unit: UnitId) -> Event {
    Event::MemberUnitAdmitted(MemberUnitAdmitted {
        community_id: community,
        unit_id: unit,
        kind: MemberKind::Jurisdiction,
    })
}

pub fn member_unit_withdrawn(community: CommunityId, unit: UnitId) -> Event {
    Event::MemberUnitWithdrawn(MemberUnitWithdrawn {
        community_id: community,
        unit_id: unit,
        reason: None,
    })
}

/// A registered community of [`DISTRICT`] whose current members are `units`.
pub fn community_with_members(community: CommunityId, units: &[UnitId]) -> Vec<Event> {
    let mut events = vec![community_registered(community, DISTRICT)];
    events.extend(units.iter().map(|u| member_unit_admitted(community, *u)));
    events
}

pub fn meeting_convened(meeting: MeetingId, community: CommunityId) -> Event {
    Event::MeetingConvened(MeetingConvened {
        meeting_id: meeting,
        community_id: community,
        kind: MeetingKind::Regular,
        title: name("2018年第二季度联席会议"),
        agenda: list(vec![text("审议党建项目"), text("认领项目")]),
        venue: None,
    })
}

pub fn attendance_recorded(meeting: MeetingId, units: Vec<UnitId>) -> Event {
    Event::AttendanceRecorded(AttendanceRecorded {
        meeting_id: meeting,
        unit_ids: list(units),
    })
}

pub fn meeting_closed(meeting: MeetingId) -> Event {
    Event::MeetingClosed(MeetingClosed {
        meeting_id: meeting,
        resolutions: list(vec![text("12个单位认领项目")]),
        minutes: None,
    })
}

pub fn project_proposed(project: ProjectId, community: CommunityId) -> Event {
    Event::ProjectProposed(ProjectProposed {
        project_id: project,
        community_id: community,
        title: name("4·25预防接种宣传日"),
        theme: Theme::ServiceProblems,
        need: None,
    })
}

pub fn project_approved(project: ProjectId, meeting: MeetingId) -> Event {
    Event::ProjectApproved(ProjectApproved {
        project_id: project,
        meeting_id: meeting,
    })
}

pub fn project_claimed(project: ProjectId, unit: UnitId, meeting: Option<MeetingId>) -> Event {
    Event::ProjectClaimed(ProjectClaimed {
        project_id: project,
        unit_id: unit,
        meeting_id: meeting,
        commitment: None,
    })
}

pub fn claim_withdrawn(project: ProjectId, unit: UnitId) -> Event {
    Event::ClaimWithdrawn(ClaimWithdrawn {
        project_id: project,
        unit_id: unit,
        reason: None,
    })
}

pub fn project_launched(project: ProjectId, unit: UnitId) -> Event {
    Event::ProjectLaunched(ProjectLaunched {
        project_id: project,
        unit_id: unit,
    })
}

pub fn activity_recorded(project: ProjectId, activity: ActivityId, unit: UnitId) -> Event {
    Event::ActivityRecorded(ActivityRecorded {
        project_id: project,
        activity_id: activity,
        unit_id: unit,
        title: name("宣传日"),
        participants: Count::default(),
        volunteers: Count::default(),
        volunteer_hours: Count::default(),
        beneficiaries: Count::default(),
        funds_yuan: Yuan::default(),
        notes: None,
    })
}

pub fn project_completed(project: ProjectId, unit: UnitId) -> Event {
    Event::ProjectCompleted(ProjectCompleted {
        project_id: project,
        unit_id: unit,
        summary: None,
    })
}

pub fn project_cancelled(project: ProjectId) -> Event {
    Event::ProjectCancelled(ProjectCancelled {
        project_id: project,
        reason: None,
    })
}

pub fn request_raised(request: RequestId, community: CommunityId, unit: UnitId) -> Event {
    Event::RequestRaised(RequestRaised {
        request_id: request,
        community_id: community,
        unit_id: unit,
        title: name("老旧院落改造"),
        need: None,
    })
}

pub fn request_resolved(request: RequestId) -> Event {
    Event::RequestResolved(RequestResolved {
        request_id: request,
        resolution: None,
    })
}
