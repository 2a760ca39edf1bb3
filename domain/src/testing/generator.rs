//! A seeded generator of valid command sequences: random, reproducible histories for tests
//! ("rebuild equals live") and benchmarks (a million-event log).
//!
//! It keeps a small model of the world it has made so far and only proposes commands the rules
//! accept, assuming every earlier one was accepted. The same seed gives the same commands,
//! ids and business times.

use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::commands::Command;
use crate::values::Theme;

/// One generated command: its name and JSON body, as an app would send it.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub name: &'static str,
    pub body: Value,
}

impl Generated {
    /// The command, parsed exactly as the gateway parses a body.
    pub fn command(&self) -> Result<Command, crate::ParseError> {
        Command::parse(self.name, self.body.to_string().as_bytes())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Proposed,
    Approved,
    Claimed,
    Launched,
    Completed,
    Cancelled,
}

struct Community {
    id: Uuid,
    members: Vec<Uuid>,
    outsiders: Vec<Uuid>,
}

struct Meeting {
    id: Uuid,
    community: usize,
}

struct Project {
    id: Uuid,
    community: usize,
    status: Status,
    approved: bool,
}

struct Request {
    id: Uuid,
}

/// The generator. Start with [`Generator::new`], then call [`Generator::next_command`].
pub struct Generator {
    rng: StdRng,
    now: DateTime<FixedOffset>,
    districts: Vec<Uuid>,
    communities: Vec<Community>,
    units: Vec<(Uuid, usize)>,
    meetings: Vec<Meeting>,
    projects: Vec<Project>,
    requests: Vec<Request>,
    /// Indices of open meetings and requests, ascending, so that picking one stays cheap in a
    /// million-command history (and picks what a scan in index order would).
    open_meetings: Vec<usize>,
    open_requests: Vec<usize>,
    /// Commands that set the world up before random ones start.
    setup: std::collections::VecDeque<Generated>,
}

const THEMES: [Theme; 6] = Theme::ALL;

impl Generator {
    /// A generator over `districts` districts, each with `communities` communities and `units`
    /// units; every unit is admitted to one or two communities of its district.
    pub fn new(seed: u64, districts: usize, communities: usize, units: usize) -> Self {
        let start = FixedOffset::east_opt(8 * 3600)
            .and_then(|tz| tz.with_ymd_and_hms(2018, 1, 8, 9, 0, 0).single())
            .unwrap_or_default();
        let mut generator = Self {
            rng: StdRng::seed_from_u64(seed),
            now: start,
            districts: Vec::new(),
            communities: Vec::new(),
            units: Vec::new(),
            meetings: Vec::new(),
            projects: Vec::new(),
            requests: Vec::new(),
            open_meetings: Vec::new(),
            open_requests: Vec::new(),
            setup: Default::default(),
        };
        generator.plan_world(districts.max(1), communities.max(1), units.max(1));
        generator
    }

    fn id(&mut self) -> Uuid {
        // Version-4 shaped ids drawn from the seeded generator, so they repeat with the seed.
        let bits: u128 = self.rng.random();
        uuid::Builder::from_random_bytes(bits.to_le_bytes()).into_uuid()
    }

    fn plan_world(&mut self, districts: usize, communities: usize, units: usize) {
        for d in 0..districts {
            let district = self.id();
            self.districts.push(district);
            self.setup.push_back(Generated {
                name: "RegisterDistrict",
                body: json!({"district_id": district, "name": format!("District {d}")}),
            });
            let first_community = self.communities.len();
            for c in 0..communities {
                let id = self.id();
                self.communities.push(Community {
                    id,
                    members: Vec::new(),
                    outsiders: Vec::new(),
                });
                self.setup.push_back(Generated {
                    name: "RegisterCommunity",
                    body: json!({"community_id": id, "district_id": district,
                                 "name": format!("Community {d}-{c}"),
                                 "committee": format!("Party committee {d}-{c}")}),
                });
            }
            for u in 0..units {
                let id = self.id();
                let home = first_community + self.rng.random_range(0..communities);
                self.units.push((id, home));
                self.setup.push_back(Generated {
                    name: "RegisterUnit",
                    body: json!({"unit_id": id, "district_id": district, "name": format!("Unit {d}-{u}")}),
                });
                let kind = ["jurisdiction", "double_report", "social_organisation"][u % 3];
                self.setup.push_back(Generated {
                    name: "AdmitMemberUnit",
                    body: json!({"community_id": self.communities[home].id, "unit_id": id, "kind": kind}),
                });
                self.communities[home].members.push(id);
                for (index, community) in self.communities[first_community..].iter_mut().enumerate()
                {
                    if first_community + index != home {
                        community.outsiders.push(id);
                    }
                }
            }
        }
    }

    fn tick(&mut self) -> String {
        // Half an hour on average: a million commands still end well before 2100.
        let minutes = self.rng.random_range(0..60);
        self.now += Duration::minutes(minutes);
        self.now.to_rfc3339()
    }

    /// The next valid command.
    pub fn next_command(&mut self) -> Generated {
        if let Some(setup) = self.setup.pop_front() {
            return setup;
        }
        loop {
            let roll = self.rng.random_range(0..100);
            let made = match roll {
                0..=5 => self.convene(),
                6..=9 => self.close_meeting(),
                10..=11 => self.attendance(),
                12..=27 => self.propose(),
                28..=33 => self.approve(),
                34..=45 => self.claim(),
                46..=48 => self.withdraw_claim(),
                49..=56 => self.launch(),
                57..=79 => self.activity(),
                80..=85 => self.complete(),
                86..=88 => self.feedback(),
                89..=90 => self.cancel(),
                91..=93 => self.raise(),
                94..=96 => self.resolve(),
                _ => self.membership(),
            };
            if let Some(made) = made {
                return made;
            }
        }
    }

    fn pick_community(&mut self) -> usize {
        self.rng.random_range(0..self.communities.len())
    }

    fn project_in(&mut self, status: &[Status]) -> Option<usize> {
        if self.projects.is_empty() {
            return None;
        }
        // Look at a few random projects, then give up for this roll.
        for _ in 0..8 {
            let index = self.rng.random_range(0..self.projects.len());
            if status.contains(&self.projects[index].status) {
                return Some(index);
            }
        }
        None
    }

    fn convene(&mut self) -> Option<Generated> {
        let community = self.pick_community();
        let id = self.id();
        let regular = self.rng.random_bool(0.7);
        let at = self.tick();
        self.open_meetings.push(self.meetings.len());
        self.meetings.push(Meeting { id, community });
        Some(Generated {
            name: "ConveneMeeting",
            body: json!({"meeting_id": id, "community_id": self.communities[community].id,
                         "kind": if regular { "regular" } else { "extraordinary" },
                         "title": "Joint conference", "agenda": ["projects", "requests"],
                         "occurred_at": at}),
        })
    }

    fn open_meeting(&mut self) -> Option<usize> {
        if self.open_meetings.is_empty() {
            return None;
        }
        Some(self.open_meetings[self.rng.random_range(0..self.open_meetings.len())])
    }

    fn close_meeting(&mut self) -> Option<Generated> {
        let index = self.open_meeting()?;
        if let Ok(at) = self.open_meetings.binary_search(&index) {
            self.open_meetings.remove(at);
        }
        let at = self.tick();
        Some(Generated {
            name: "CloseMeeting",
            body: json!({"meeting_id": self.meetings[index].id, "resolutions": ["adopted"], "occurred_at": at}),
        })
    }

    fn attendance(&mut self) -> Option<Generated> {
        let index = self.open_meeting()?;
        let members = &self.communities[self.meetings[index].community].members;
        if members.is_empty() {
            return None;
        }
        let units: Vec<Uuid> = members.iter().take(5).copied().collect();
        Some(Generated {
            name: "RecordAttendance",
            body: json!({"meeting_id": self.meetings[index].id, "unit_ids": units}),
        })
    }

    fn propose(&mut self) -> Option<Generated> {
        let community = self.pick_community();
        let id = self.id();
        let theme = THEMES[self.rng.random_range(0..THEMES.len())];
        let at = self.tick();
        self.projects.push(Project {
            id,
            community,
            status: Status::Proposed,
            approved: false,
        });
        Some(Generated {
            name: "ProposeProject",
            body: json!({"project_id": id, "community_id": self.communities[community].id,
                         "title": format!("Project {}", self.projects.len()), "theme": theme.code(),
                         "occurred_at": at}),
        })
    }

    fn approve(&mut self) -> Option<Generated> {
        let index = self.project_in(&[Status::Proposed])?;
        let community = self.projects[index].community;
        let meeting = self
            .meetings
            .iter()
            .rev()
            .find(|m| m.community == community)?
            .id;
        self.projects[index].status = Status::Approved;
        self.projects[index].approved = true;
        let at = self.tick();
        Some(Generated {
            name: "ApproveProject",
            body: json!({"project_id": self.projects[index].id, "meeting_id": meeting, "occurred_at": at}),
        })
    }

    fn claim(&mut self) -> Option<Generated> {
        let index = self.project_in(&[Status::Proposed, Status::Approved])?;
        let members = &self.communities[self.projects[index].community].members;
        if members.is_empty() {
            return None;
        }
        let unit = members[self.rng.random_range(0..members.len())];
        self.projects[index].status = Status::Claimed;
        let at = self.tick();
        Some(Generated {
            name: "ClaimProject",
            body: json!({"project_id": self.projects[index].id, "unit_id": unit, "occurred_at": at}),
        })
    }

    fn withdraw_claim(&mut self) -> Option<Generated> {
        let index = self.project_in(&[Status::Claimed])?;
        // A withdrawn claim returns the project to where it stood before the claim.
        self.projects[index].status = if self.projects[index].approved {
            Status::Approved
        } else {
            Status::Proposed
        };
        let at = self.tick();
        Some(Generated {
            name: "WithdrawClaim",
            body: json!({"project_id": self.projects[index].id, "reason": "reassigned", "occurred_at": at}),
        })
    }

    fn advance(&mut self, from: Status, to: Status, name: &'static str) -> Option<Generated> {
        let index = self.project_in(&[from])?;
        self.projects[index].status = to;
        let at = self.tick();
        Some(Generated {
            name,
            body: json!({"project_id": self.projects[index].id, "occurred_at": at}),
        })
    }

    fn launch(&mut self) -> Option<Generated> {
        self.advance(Status::Claimed, Status::Launched, "LaunchProject")
    }

    fn complete(&mut self) -> Option<Generated> {
        self.advance(Status::Launched, Status::Completed, "CompleteProject")
    }

    fn activity(&mut self) -> Option<Generated> {
        let index = self.project_in(&[Status::Launched])?;
        let participants = self.rng.random_range(0..400);
        let volunteers = self.rng.random_range(0..40);
        let hours = self.rng.random_range(0..200);
        let beneficiaries = self.rng.random_range(0..100);
        let funds = self.rng.random_range(0..20_000);
        let at = self.tick();
        Some(Generated {
            name: "RecordActivity",
            body: json!({"project_id": self.projects[index].id, "title": "Activity",
                         "participants": participants, "volunteers": volunteers,
                         "volunteer_hours": hours, "beneficiaries": beneficiaries,
                         "funds_yuan": funds, "occurred_at": at}),
        })
    }

    fn feedback(&mut self) -> Option<Generated> {
        let index = self.project_in(&[Status::Completed])?;
        let rating = self.rng.random_range(1..=5);
        let at = self.tick();
        Some(Generated {
            name: "RecordFeedback",
            body: json!({"project_id": self.projects[index].id, "rating": rating, "occurred_at": at}),
        })
    }

    fn cancel(&mut self) -> Option<Generated> {
        let index = self.project_in(&[Status::Proposed, Status::Approved, Status::Claimed])?;
        self.projects[index].status = Status::Cancelled;
        let at = self.tick();
        Some(Generated {
            name: "CancelProject",
            body: json!({"project_id": self.projects[index].id, "reason": "no longer needed", "occurred_at": at}),
        })
    }

    fn raise(&mut self) -> Option<Generated> {
        let community = self.pick_community();
        let members = &self.communities[community].members;
        if members.is_empty() {
            return None;
        }
        let unit = members[self.rng.random_range(0..members.len())];
        let id = self.id();
        let at = self.tick();
        self.open_requests.push(self.requests.len());
        self.requests.push(Request { id });
        Some(Generated {
            name: "RaiseRequest",
            body: json!({"request_id": id, "community_id": self.communities[community].id,
                         "unit_id": unit, "title": "Help with a courtyard", "occurred_at": at}),
        })
    }

    fn resolve(&mut self) -> Option<Generated> {
        if self.open_requests.is_empty() {
            return None;
        }
        let at = self.rng.random_range(0..self.open_requests.len());
        let index = self.open_requests.remove(at);
        let at = self.tick();
        Some(Generated {
            name: "ResolveRequest",
            body: json!({"request_id": self.requests[index].id, "resolution": "done", "occurred_at": at}),
        })
    }

    /// Admits an outsider unit to a community (units may sit in several conferences).
    fn membership(&mut self) -> Option<Generated> {
        let community = self.pick_community();
        let c = &mut self.communities[community];
        if c.outsiders.is_empty() {
            return None;
        }
        let unit = c.outsiders.swap_remove(0);
        c.members.push(unit);
        let id = c.id;
        Some(Generated {
            name: "AdmitMemberUnit",
            body: json!({"community_id": id, "unit_id": unit, "kind": "double_report"}),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_commands() {
        let mut a = Generator::new(7, 1, 2, 5);
        let mut b = Generator::new(7, 1, 2, 5);
        for _ in 0..200 {
            assert_eq!(a.next_command(), b.next_command());
        }
    }

    #[test]
    fn every_generated_command_parses() {
        let mut generator = Generator::new(11, 2, 3, 8);
        for _ in 0..2_000 {
            let generated = generator.next_command();
            assert!(generated.command().is_ok(), "{generated:?}");
        }
    }
}
