//! The story of the seed report (`shared/seed/000_319f8bceceab8837.txt`, 2018) as data: the
//! tables below become the commands `lianxi demo` sends, in business-time order.
//!
//! What the report names is kept as it says: Zhaozhen district (赵镇街道) of Jintang county, its
//! four communities, the units and what they did — the 24 April meeting at Tuoyuan where
//! projects were claimed, the 4·25 vaccination publicity day with about 300 people, 水城印象's
//! "小区是我家 治理靠大家" launched on 4 May and praised by the residents, 小手牵大手, the Shili
//! meeting where 12 units claimed projects, the county urban-management bureau's clean-up of
//! illegal construction, Sanjiang's book bar, the market-supervision bureau's request about a
//! run-down courtyard, Yulongjie's 13 units, the housing office paying the day-care centre's
//! utilities and the disabled persons' federation's gifts to 10 households.
//!
//! What the report leaves out is filled in plausibly and marked *illustrative* below: the
//! eight Shili units it does not name, the projects of Yulongjie's other eleven units, meeting
//! times it does not give, and counts it does not state (volunteers, hours, yuan).
//!
//! Ids are fixed (`2018a000-0000-4000-8000-KKKKNNNNNNNN`: K the kind, N the number), so the
//! story is the same on every machine and every run; this file needs only `uuid`, `chrono` and
//! `serde_json`, so tests may include it with `#[path]`.

use chrono::{DateTime, Duration, FixedOffset, NaiveDateTime, TimeZone};
use serde_json::{json, Value};
use uuid::Uuid;

const DISTRICT: u128 = 1;
const COMMUNITY: u128 = 2;
const UNIT: u128 = 3;
const MEETING: u128 = 4;
const PROJECT: u128 = 5;
const ACTIVITY: u128 = 6;
const REQUEST: u128 = 7;

/// The id of the `n`th thing of `kind` in the story.
pub const fn id(kind: u128, n: u128) -> Uuid {
    Uuid::from_u128(0x2018a000_0000_4000_8000_000000000000 | (kind << 32) | n)
}

/// 赵镇街道.
pub const ZHAOZHEN: Uuid = id(DISTRICT, 1);
/// 三江社区.
pub const SANJIANG: Uuid = id(COMMUNITY, 1);
/// 沱源社区.
pub const TUOYUAN: Uuid = id(COMMUNITY, 2);
/// 十里社区.
pub const SHILI: Uuid = id(COMMUNITY, 3);
/// 玉龙街社区.
pub const YULONGJIE: Uuid = id(COMMUNITY, 4);

const DISTRICT_NAME: &str = "赵镇街道";
const DISTRICT_REGISTERED: &str = "2018-04-02 09:00";

/// (number, name, committee)
const COMMUNITIES: [(u128, &str, &str); 4] = [
    (1, "三江社区", "三江社区党委"),
    (2, "沱源社区", "沱源社区党委"),
    (3, "十里社区", "十里社区党委"),
    (4, "玉龙街社区", "玉龙街社区党委"),
];

/// (number, name): the units' party organisations, registered in the district.
const UNITS: [(u128, &str); 20] = [
    (1, "县妇幼保健院党总支"),
    (2, "锦城教育学校党支部"),
    (3, "韩滩慈济小学党支部"),
    (4, "水城印象党支部"),
    (5, "县委社治委"),
    (6, "县国土局"),
    (7, "县建设局"),
    (8, "县城管局"),
    (9, "县文旅局"),
    (10, "县市场和质量监管局机关党委"),
    (11, "赵镇房管所党支部"),
    (12, "县残联党支部"),
    // Illustrative: the report names four of the twelve Shili units ("县委社治委、县国土局、
    // 县建设局、县城管局等12个单位"); these are the other eight.
    (13, "县民政局"),
    (14, "县司法局"),
    (15, "县卫生和计划生育局"),
    (16, "县人力资源和社会保障局"),
    (17, "县公安局赵镇派出所"),
    (18, "县供电公司"),
    (19, "县水务局"),
    (20, "县教育局"),
];

const J: &str = "jurisdiction";
const D: &str = "double_report";
const S: &str = "social_organisation";

/// (unit, kind of membership)
type Members = &'static [(u128, &'static str)];

/// (community, admitted at, members): who sits in each joint conference.
const MEMBERS: [(u128, &str, Members); 4] = [
    (1, "2018-04-10 09:00", &[(9, D), (10, J), (20, D)]),
    (2, "2018-04-10 10:00", &[(1, J), (2, J), (3, J), (4, S)]),
    (
        3,
        "2018-05-03 09:00",
        &[
            (5, D),
            (6, D),
            (7, D),
            (8, D),
            (13, D),
            (14, D),
            (15, D),
            (16, D),
            (17, J),
            (18, J),
            (19, D),
            (20, D),
        ],
    ),
    // 玉龙街: "13个单位与社区党委开展共建": the housing office and the federation, and eleven
    // units that also sit in Shili's conference (one unit may sit in several).
    (
        4,
        "2018-05-03 10:00",
        &[
            (11, J),
            (12, D),
            (5, D),
            (6, D),
            (7, D),
            (8, D),
            (13, D),
            (14, D),
            (15, D),
            (16, D),
            (17, J),
            (18, J),
            (19, D),
        ],
    ),
];

struct Meeting {
    n: u128,
    community: u128,
    kind: &'static str,
    title: &'static str,
    agenda: &'static [&'static str],
    venue: &'static str,
    /// When it sits. Times the report does not give are illustrative.
    sits: &'static str,
    /// Attending units; empty for a meeting that has not sat yet.
    attended: &'static [u128],
    /// Resolutions it adopted when it closed; empty: not closed yet.
    resolutions: &'static [&'static str],
}

const MEETINGS: [Meeting; 5] = [
    Meeting {
        n: 1,
        community: 2,
        kind: "regular",
        title: "沱源社区党建联席会暨社区营造推进工作会",
        agenda: &[
            "围绕“党建工作联做、党建资源联享、精神文明联创、服务难题联解、公益事业联办、生活环境联建”展开讨论，献计献策",
            "认领党建服务项目",
        ],
        venue: "沱源社区党群服务中心",
        sits: "2018-04-24 14:30",
        attended: &[1, 2, 3, 4],
        resolutions: &[
            "县妇幼保健院党总支认领“4·25”预防接种宣传活动，结合医院特色开展特色服务",
            "锦城教育学校党支部认领社区四点半学校",
            "韩滩慈济小学党支部认领校园传统文化队伍建设",
            "水城印象党支部认领“小区是我家 治理靠大家”服务项目",
        ],
    },
    Meeting {
        n: 2,
        community: 1,
        kind: "regular",
        title: "三江社区党建联席会议",
        agenda: &["通报社区党建联席会议制度", "研究社区书吧筹建", "认领党建服务项目"],
        venue: "三江社区党群服务中心",
        sits: "2018-04-26 09:30",
        attended: &[9, 10, 20],
        resolutions: &["县文旅局党组织支持社区书吧筹建，提供书籍并视需要配备指导老师"],
    },
    Meeting {
        n: 3,
        community: 4,
        kind: "regular",
        title: "玉龙街社区党建联席会议",
        agenda: &["共驻共建单位与社区党委开展共建", "认领党建服务项目"],
        venue: "玉龙街社区党群服务中心",
        sits: "2018-05-08 15:00",
        attended: &[11, 12, 5, 6, 7, 8, 13, 14, 15, 16, 17, 18, 19],
        resolutions: &["13个单位党组织分别认领党建服务项目"],
    },
    Meeting {
        n: 4,
        community: 3,
        kind: "regular",
        title: "十里社区党建联席会议",
        agenda: &["社区治理重点、难点、热点问题", "认领党建服务项目"],
        venue: "十里社区党群服务中心",
        sits: "2018-05-10 09:30",
        attended: &[5, 6, 7, 8, 13, 14, 15, 16, 17, 18, 19, 20],
        resolutions: &[
            "县委社治委、县国土局、县建设局、县城管局等12个单位党组织分别认领党建服务项目",
        ],
    },
    // Illustrative: Tuoyuan's third-quarter regular meeting, convened ahead ("原则上每季度召开
    // 一次"), so that a board as of the report's date has a next meeting.
    Meeting {
        n: 5,
        community: 2,
        kind: "regular",
        title: "沱源社区党建联席会议（三季度）",
        agenda: &["通报二季度党建项目落实情况", "审议三季度党建项目"],
        venue: "沱源社区党群服务中心",
        sits: "2018-07-18 14:30",
        attended: &[],
        resolutions: &[],
    },
];

struct Project {
    n: u128,
    community: u128,
    title: &'static str,
    theme: &'static str,
    need: &'static str,
    proposed: &'static str,
    /// The meeting that approved it and at which it was claimed; 0: claimed outside a meeting.
    meeting: u128,
    claimant: u128,
    /// When it was claimed outside a meeting (ignored when `meeting` is set).
    claimed: &'static str,
    commitment: &'static str,
    /// When the claimant launched it; empty: not yet.
    launched: &'static str,
    /// (when, summary) once completed; empty: not yet.
    completed: (&'static str, &'static str),
    /// (when, rating 1–5, comment) from residents; rating 0: none.
    feedback: (&'static str, u8, &'static str),
}

const NONE2: (&str, &str) = ("", "");
const NONE3: (&str, u8, &str) = ("", 0, "");

/// A project claimed at a meeting and not launched yet.
const fn claimed(
    n: u128,
    community: u128,
    meeting: u128,
    claimant: u128,
    title: &'static str,
    theme: &'static str,
    proposed: &'static str,
) -> Project {
    Project {
        n,
        community,
        title,
        theme,
        need: "",
        proposed,
        meeting,
        claimant,
        claimed: "",
        commitment: "",
        launched: "",
        completed: NONE2,
        feedback: NONE3,
    }
}

const PROJECTS: [Project; 32] = [
    // 沱源: claimed at the 24 April meeting.
    Project {
        n: 1,
        community: 2,
        title: "“4·25”预防接种宣传活动",
        theme: "public_welfare",
        need: "辖区儿童家长对预防接种认识不足",
        proposed: "2018-04-20 10:00",
        meeting: 1,
        claimant: 1,
        claimed: "",
        commitment: "社区居民需要我们就要做，结合医院特色开展特色服务",
        launched: "2018-04-25 14:00",
        completed: (
            "2018-04-25 18:00",
            "与沱源社区党委共同举办“4·25”预防接种宣传活动，约300人参与，取得良好的宣传效果",
        ),
        feedback: NONE3,
    },
    Project {
        n: 2,
        community: 2,
        title: "四点半学校·多彩课堂",
        theme: "shared_resources",
        need: "留守儿童放学后无人照看，学习生活单调",
        proposed: "2018-04-20 10:10",
        meeting: 1,
        claimant: 2,
        claimed: "",
        commitment: "认领社区四点半学校，开办以手工、绘画、科普为主的多彩课堂，为留守儿童服务",
        launched: "2018-05-07 16:30",
        completed: NONE2,
        feedback: NONE3,
    },
    Project {
        n: 3,
        community: 2,
        title: "校园传统文化队伍",
        theme: "civility",
        need: "结合孩子特长传承传统文化",
        proposed: "2018-04-20 10:20",
        meeting: 1,
        claimant: 3,
        claimed: "",
        commitment: "以党建联建工作为契机打造校园传统文化队伍",
        launched: "",
        completed: NONE2,
        feedback: NONE3,
    },
    Project {
        n: 4,
        community: 2,
        title: "小手牵大手",
        theme: "living_environment",
        need: "动员更多家长参与社区治理",
        proposed: "2018-05-15 10:00",
        meeting: 0,
        claimant: 3,
        claimed: "2018-05-20 10:00",
        commitment: "通过学生动员家长主动参与到社区治理中来",
        launched: "2018-05-28 16:00",
        completed: NONE2,
        feedback: NONE3,
    },
    Project {
        n: 5,
        community: 2,
        title: "小区是我家 治理靠大家",
        theme: "living_environment",
        need: "沱源小区绿化杂乱，无人修剪",
        proposed: "2018-04-20 10:30",
        meeting: 1,
        claimant: 4,
        claimed: "",
        commitment: "派遣园艺师傅和志愿者到沱源小区修剪绿化",
        launched: "2018-05-04 09:00",
        completed: ("2018-05-31 17:00", "沱源小区绿化修剪完成"),
        feedback: ("2018-06-01 10:00", 5, "受到小区居民的一致好评"),
    },
    // 三江.
    Project {
        n: 6,
        community: 1,
        title: "社区书吧",
        theme: "shared_resources",
        need: "居民需要家门口读书学习的地方",
        proposed: "2018-04-23 10:00",
        meeting: 2,
        claimant: 9,
        claimed: "",
        commitment: "为书吧提供书籍，并视社区需要配备指导老师",
        launched: "2018-05-15 09:00",
        completed: NONE2,
        feedback: NONE3,
    },
    // 十里: claimed at its meeting by 12 units (the county urban-management bureau two).
    Project {
        n: 7,
        community: 3,
        title: "社区治理工作指导",
        theme: "party_work",
        need: "社区治理缺乏专业指导",
        proposed: "2018-05-07 09:00",
        meeting: 4,
        claimant: 5,
        claimed: "",
        commitment: "充分发挥自身职能，对社区治理工作进行指导",
        launched: "2018-05-15 09:00",
        completed: NONE2,
        feedback: NONE3,
    },
    claimed(
        8,
        3,
        4,
        6,
        "国土资源政策进社区",
        "civility",
        "2018-05-07 09:10",
    ),
    claimed(
        9,
        3,
        4,
        7,
        "老旧院落改造技术指导",
        "living_environment",
        "2018-05-07 09:20",
    ),
    Project {
        n: 10,
        community: 3,
        title: "违章搭建整治",
        theme: "living_environment",
        need: "辖区违章搭建多，影响居住环境和安全",
        proposed: "2018-05-07 09:30",
        meeting: 4,
        claimant: 8,
        claimed: "",
        commitment: "针对辖区情况，联合有关部门对违章搭建进行整治",
        launched: "2018-05-14 09:00",
        completed: NONE2,
        feedback: NONE3,
    },
    Project {
        n: 11,
        community: 3,
        title: "市场周边经营环境综合整治",
        theme: "living_environment",
        need: "市场周边占道经营，环境脏乱",
        proposed: "2018-05-07 09:40",
        meeting: 4,
        claimant: 8,
        claimed: "",
        commitment: "联合有关部门对市场周边经营环境进行综合整治",
        launched: "2018-05-14 09:00",
        completed: NONE2,
        feedback: NONE3,
    },
    // Illustrative: the projects of the eight Shili units the report does not name.
    claimed(
        12,
        3,
        4,
        13,
        "困难群众走访帮扶",
        "public_welfare",
        "2018-05-07 10:00",
    ),
    claimed(
        13,
        3,
        4,
        14,
        "法律服务进社区",
        "service_problems",
        "2018-05-07 10:10",
    ),
    claimed(
        14,
        3,
        4,
        15,
        "家庭医生签约服务宣传",
        "public_welfare",
        "2018-05-07 10:20",
    ),
    claimed(
        15,
        3,
        4,
        16,
        "就业政策咨询",
        "service_problems",
        "2018-05-07 10:30",
    ),
    claimed(16, 3, 4, 17, "平安社区宣传", "civility", "2018-05-07 10:40"),
    claimed(
        17,
        3,
        4,
        18,
        "老旧院落用电安全检查",
        "service_problems",
        "2018-05-07 10:50",
    ),
    claimed(18, 3, 4, 19, "节约用水宣传", "civility", "2018-05-07 11:00"),
    claimed(19, 3, 4, 20, "家庭教育讲座", "civility", "2018-05-07 11:10"),
    // 玉龙街: 13 units claimed projects at its meeting.
    Project {
        n: 20,
        community: 4,
        title: "社区发展治理服务项目",
        theme: "service_problems",
        need: "社区日间照料中心水、电费用无着，运行困难",
        proposed: "2018-05-04 09:00",
        meeting: 3,
        claimant: 11,
        claimed: "",
        commitment: "参加社区党组织联谊活动，支持社区日间照料中心的水、电费用，参加志愿服务活动",
        launched: "2018-05-10 09:00",
        completed: NONE2,
        feedback: NONE3,
    },
    Project {
        n: 21,
        community: 4,
        title: "残疾人帮扶慰问",
        theme: "public_welfare",
        need: "辖区特别困难的残疾人家庭需要帮扶",
        proposed: "2018-05-04 09:10",
        meeting: 3,
        claimant: 12,
        claimed: "",
        commitment: "开展党组织联谊活动、对残疾人的帮扶慰问、政策宣传等服务",
        launched: "2018-05-12 09:00",
        completed: (
            "2018-05-31 17:00",
            "为辖区特别困难的10户残疾人购买了慰问品，进行了慰问",
        ),
        feedback: NONE3,
    },
    // Illustrative: the projects of Yulongjie's other eleven units.
    claimed(
        22,
        4,
        3,
        5,
        "社区发展治理培训",
        "party_work",
        "2018-05-04 09:20",
    ),
    claimed(
        23,
        4,
        3,
        6,
        "地质灾害防治知识宣传",
        "public_welfare",
        "2018-05-04 09:30",
    ),
    claimed(
        24,
        4,
        3,
        7,
        "小区路灯维修",
        "living_environment",
        "2018-05-04 09:40",
    ),
    claimed(
        25,
        4,
        3,
        8,
        "背街小巷环境整治",
        "living_environment",
        "2018-05-04 09:50",
    ),
    claimed(
        26,
        4,
        3,
        13,
        "日间照料中心为老服务",
        "public_welfare",
        "2018-05-04 10:00",
    ),
    claimed(
        27,
        4,
        3,
        14,
        "人民调解进院落",
        "service_problems",
        "2018-05-04 10:10",
    ),
    claimed(
        28,
        4,
        3,
        15,
        "老年人健康体检",
        "public_welfare",
        "2018-05-04 10:20",
    ),
    claimed(
        29,
        4,
        3,
        16,
        "就业援助进社区",
        "service_problems",
        "2018-05-04 10:30",
    ),
    claimed(30, 4, 3, 17, "防诈骗宣传", "civility", "2018-05-04 10:40"),
    claimed(
        31,
        4,
        3,
        18,
        "用电安全进家庭",
        "service_problems",
        "2018-05-04 10:50",
    ),
    claimed(
        32,
        4,
        3,
        19,
        "二次供水设施检查",
        "living_environment",
        "2018-05-04 11:00",
    ),
];

struct Activity {
    n: u128,
    project: u128,
    at: &'static str,
    title: &'static str,
    participants: u32,
    volunteers: u32,
    volunteer_hours: u32,
    beneficiaries: u32,
    funds_yuan: u64,
    notes: &'static str,
}

/// Counts the report gives: 300 participants on 4·25, 10 households. The rest is illustrative.
const ACTIVITIES: [Activity; 9] = [
    Activity {
        n: 1,
        project: 1,
        at: "2018-04-25 15:00",
        title: "“4·25”预防接种宣传日",
        participants: 300,
        volunteers: 12,
        volunteer_hours: 48,
        beneficiaries: 0,
        funds_yuan: 0,
        notes:
            "县妇幼保健院党总支与沱源社区党委共同举办，红苹果幼儿园老师、家长、孩子等约300人参与",
    },
    Activity {
        n: 2,
        project: 5,
        at: "2018-05-04 09:30",
        title: "园艺师傅和志愿者修剪沱源小区绿化",
        participants: 20,
        volunteers: 16,
        volunteer_hours: 64,
        beneficiaries: 0,
        funds_yuan: 0,
        notes: "“小区是我家 治理靠大家”项目正式启动",
    },
    Activity {
        n: 3,
        project: 2,
        at: "2018-05-07 16:45",
        title: "多彩课堂开课：手工、绘画、科普",
        participants: 35,
        volunteers: 5,
        volunteer_hours: 10,
        beneficiaries: 30,
        funds_yuan: 0,
        notes: "为留守儿童服务",
    },
    Activity {
        n: 4,
        project: 10,
        at: "2018-05-16 09:00",
        title: "联合有关部门整治违章搭建",
        participants: 25,
        volunteers: 0,
        volunteer_hours: 0,
        beneficiaries: 0,
        funds_yuan: 0,
        notes: "",
    },
    Activity {
        n: 5,
        project: 21,
        at: "2018-05-18 09:00",
        title: "为10户特别困难残疾人购买慰问品并上门慰问",
        participants: 8,
        volunteers: 6,
        volunteer_hours: 18,
        beneficiaries: 10,
        funds_yuan: 3000,
        notes: "",
    },
    Activity {
        n: 6,
        project: 7,
        at: "2018-05-18 14:30",
        title: "社区治理工作专题指导",
        participants: 40,
        volunteers: 3,
        volunteer_hours: 6,
        beneficiaries: 0,
        funds_yuan: 0,
        notes: "",
    },
    Activity {
        n: 7,
        project: 6,
        at: "2018-05-22 10:00",
        title: "为社区书吧提供书籍",
        participants: 10,
        volunteers: 6,
        volunteer_hours: 12,
        beneficiaries: 0,
        funds_yuan: 0,
        notes: "征求社区意见，是否需要配备指导老师",
    },
    Activity {
        n: 8,
        project: 11,
        at: "2018-05-23 09:00",
        title: "市场周边经营环境综合整治",
        participants: 30,
        volunteers: 0,
        volunteer_hours: 0,
        beneficiaries: 0,
        funds_yuan: 0,
        notes: "",
    },
    Activity {
        n: 9,
        project: 20,
        at: "2018-05-31 10:00",
        title: "支付社区日间照料中心水、电费用",
        participants: 0,
        volunteers: 0,
        volunteer_hours: 0,
        beneficiaries: 0,
        funds_yuan: 2400,
        notes: "解决了日间照料中心运行困难的问题",
    },
];

struct Request {
    n: u128,
    community: u128,
    unit: u128,
    title: &'static str,
    need: &'static str,
    raised: &'static str,
    /// (when, resolution); empty: still open.
    resolved: (&'static str, &'static str),
}

/// Two-way: units ask their communities for help too.
const REQUESTS: [Request; 2] = [
    Request {
        n: 1,
        community: 1,
        unit: 10,
        title: "县工商局宿舍老旧院落推行自治管理",
        need: "院落遗留问题太多，环境脏乱不堪，居民怨声载道，希望社区帮忙在院落推行自治管理",
        raised: "2018-04-16 10:00",
        resolved: (
            "2018-05-30 16:00",
            "社区干部与群众开坝坝会收集问题和意见建议，帮助院落成立业委会，发动居民筹资整改；院落面貌焕然一新",
        ),
    },
    Request {
        n: 2,
        community: 4,
        unit: 11,
        title: "辖区公租房安全隐患整改",
        need: "辖区公租房存在安全隐患，需要社区配合整改",
        raised: "2018-05-12 10:00",
        resolved: ("2018-05-29 16:00", "社区党组织积极配合房管所完成公租房安全隐患整改"),
    },
];

/// One command of the story.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// A stable name for the step, used as its idempotency key.
    pub key: String,
    /// The command's name, as in DOMAIN.md.
    pub name: &'static str,
    /// Its JSON body, with `occurred_at`.
    pub body: Value,
    /// Its business time, for ordering.
    at: DateTime<FixedOffset>,
}

/// Why the story tables could not be turned into commands (a typo in a table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadTime(String);

impl std::fmt::Display for BadTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the demo story has a bad time or reference: {}", self.0)
    }
}

impl std::error::Error for BadTime {}

fn time(local: &str, offset_minutes: i64) -> Result<DateTime<FixedOffset>, BadTime> {
    let cst = FixedOffset::east_opt(8 * 3600).ok_or_else(|| BadTime(local.to_owned()))?;
    let naive = NaiveDateTime::parse_from_str(local, "%Y-%m-%d %H:%M")
        .map_err(|_| BadTime(local.to_owned()))?;
    cst.from_local_datetime(&naive)
        .single()
        .map(|t| t + Duration::minutes(offset_minutes))
        .ok_or_else(|| BadTime(local.to_owned()))
}

struct Steps(Vec<Step>);

impl Steps {
    fn push(
        &mut self,
        key: String,
        name: &'static str,
        at: DateTime<FixedOffset>,
        mut body: Value,
    ) {
        body["occurred_at"] = Value::String(at.to_rfc3339());
        self.0.push(Step {
            key,
            name,
            body,
            at,
        });
    }
}

fn optional(text: &str) -> Value {
    if text.is_empty() {
        Value::Null
    } else {
        Value::String(text.to_owned())
    }
}

/// The story's commands, in business-time order (ties keep the order they are made in).
pub fn steps() -> Result<Vec<Step>, BadTime> {
    let mut s = Steps(Vec::new());
    let registered = time(DISTRICT_REGISTERED, 0)?;
    s.push(
        "district".into(),
        "RegisterDistrict",
        registered,
        json!({ "district_id": ZHAOZHEN, "name": DISTRICT_NAME }),
    );
    for (n, name, committee) in COMMUNITIES {
        s.push(
            format!("community-{n}"),
            "RegisterCommunity",
            registered + Duration::minutes(10 * n as i64),
            json!({
                "community_id": id(COMMUNITY, n),
                "district_id": ZHAOZHEN,
                "name": name,
                "committee": committee,
            }),
        );
    }
    for (n, name) in UNITS {
        s.push(
            format!("unit-{n}"),
            "RegisterUnit",
            time("2018-04-03 09:00", n as i64)?,
            json!({ "unit_id": id(UNIT, n), "district_id": ZHAOZHEN, "name": name }),
        );
    }
    for (community, at, members) in MEMBERS {
        for (i, (unit, kind)) in members.iter().enumerate() {
            s.push(
                format!("member-{community}-{unit}"),
                "AdmitMemberUnit",
                time(at, i as i64)?,
                json!({
                    "community_id": id(COMMUNITY, community),
                    "unit_id": id(UNIT, *unit),
                    "kind": kind,
                }),
            );
        }
    }
    for m in &MEETINGS {
        let sits = time(m.sits, 0)?;
        let meeting_id = id(MEETING, m.n);
        let body = json!({
            "meeting_id": meeting_id,
            "community_id": id(COMMUNITY, m.community),
            "kind": m.kind,
            "title": m.title,
            "agenda": m.agenda,
            "venue": m.venue,
        });
        // `occurred_at` of ConveneMeeting is when the meeting sits.
        s.push(format!("meeting-{}", m.n), "ConveneMeeting", sits, body);
        if !m.attended.is_empty() {
            let units: Vec<Uuid> = m.attended.iter().map(|u| id(UNIT, *u)).collect();
            s.push(
                format!("attendance-{}", m.n),
                "RecordAttendance",
                sits + Duration::minutes(5),
                json!({ "meeting_id": meeting_id, "unit_ids": units }),
            );
        }
        if !m.resolutions.is_empty() {
            s.push(
                format!("close-{}", m.n),
                "CloseMeeting",
                sits + Duration::hours(2),
                json!({ "meeting_id": meeting_id, "resolutions": m.resolutions }),
            );
        }
    }
    for p in &PROJECTS {
        project_steps(&mut s, p)?;
    }
    for a in &ACTIVITIES {
        s.push(
            format!("activity-{}", a.n),
            "RecordActivity",
            time(a.at, 0)?,
            json!({
                "project_id": id(PROJECT, a.project),
                "activity_id": id(ACTIVITY, a.n),
                "title": a.title,
                "participants": a.participants,
                "volunteers": a.volunteers,
                "volunteer_hours": a.volunteer_hours,
                "beneficiaries": a.beneficiaries,
                "funds_yuan": a.funds_yuan,
                "notes": optional(a.notes),
            }),
        );
    }
    for r in &REQUESTS {
        let request_id = id(REQUEST, r.n);
        s.push(
            format!("request-{}", r.n),
            "RaiseRequest",
            time(r.raised, 0)?,
            json!({
                "request_id": request_id,
                "community_id": id(COMMUNITY, r.community),
                "unit_id": id(UNIT, r.unit),
                "title": r.title,
                "need": optional(r.need),
            }),
        );
        let (at, resolution) = r.resolved;
        if !at.is_empty() {
            s.push(
                format!("resolve-{}", r.n),
                "ResolveRequest",
                time(at, 0)?,
                json!({ "request_id": request_id, "resolution": optional(resolution) }),
            );
        }
    }
    let mut steps = s.0;
    for step in &mut steps {
        strip_nulls(&mut step.body);
    }
    steps.sort_by_key(|step| step.at);
    Ok(steps)
}

fn project_steps(s: &mut Steps, p: &Project) -> Result<(), BadTime> {
    let project_id = id(PROJECT, p.n);
    s.push(
        format!("project-{}", p.n),
        "ProposeProject",
        time(p.proposed, 0)?,
        json!({
            "project_id": project_id,
            "community_id": id(COMMUNITY, p.community),
            "title": p.title,
            "theme": p.theme,
            "need": optional(p.need),
        }),
    );
    let mut claim = json!({
        "project_id": project_id,
        "unit_id": id(UNIT, p.claimant),
        "commitment": optional(p.commitment),
    });
    let claimed_at = if p.meeting == 0 {
        time(p.claimed, 0)?
    } else {
        let meeting = MEETINGS
            .iter()
            .find(|m| m.n == p.meeting)
            .ok_or_else(|| BadTime(format!("meeting {} of project {}", p.meeting, p.n)))?;
        let sits = time(meeting.sits, 0)?;
        let meeting_id = id(MEETING, p.meeting);
        s.push(
            format!("approve-{}", p.n),
            "ApproveProject",
            sits + Duration::minutes(10),
            json!({ "project_id": project_id, "meeting_id": meeting_id }),
        );
        claim["meeting_id"] = json!(meeting_id);
        sits + Duration::minutes(20 + p.n as i64)
    };
    s.push(format!("claim-{}", p.n), "ClaimProject", claimed_at, claim);
    if !p.launched.is_empty() {
        s.push(
            format!("launch-{}", p.n),
            "LaunchProject",
            time(p.launched, 0)?,
            json!({ "project_id": project_id }),
        );
    }
    let (at, summary) = p.completed;
    if !at.is_empty() {
        s.push(
            format!("complete-{}", p.n),
            "CompleteProject",
            time(at, 0)?,
            json!({ "project_id": project_id, "summary": optional(summary) }),
        );
    }
    let (at, rating, comment) = p.feedback;
    if rating > 0 {
        s.push(
            format!("feedback-{}", p.n),
            "RecordFeedback",
            time(at, 0)?,
            json!({ "project_id": project_id, "rating": rating, "comment": optional(comment) }),
        );
    }
    Ok(())
}

/// Drops `null` members, so optional fields the story leaves empty are simply absent.
fn strip_nulls(body: &mut Value) {
    if let Some(object) = body.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_has_a_unique_key_and_a_body_that_parses() {
        let steps = steps().expect("the story's times are valid");
        let mut keys: Vec<&str> = steps.iter().map(|s| s.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), steps.len(), "duplicate step keys");
        for step in &steps {
            let body = serde_json::to_vec(&step.body).expect("JSON");
            if let Err(e) = domain::Command::parse(step.name, &body) {
                panic!("{} {} does not parse: {e:?}", step.name, step.body);
            }
        }
    }

    #[test]
    fn the_steps_run_in_business_time_order_with_the_meetings_before_their_claims() {
        let steps = steps().expect("valid");
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
        let position = |key: &str| steps.iter().position(|s| s.key == key);
        assert!(position("meeting-1") < position("approve-1"));
        assert!(position("approve-1") < position("claim-1"));
        assert!(position("claim-1") < position("launch-1"));
        assert!(position("launch-1") < position("activity-1"));
        assert!(position("project-4") < position("claim-4"));
        assert_eq!(steps.first().map(|s| s.name), Some("RegisterDistrict"));
    }

    #[test]
    fn ids_are_readable_constants() {
        assert_eq!(TUOYUAN.to_string(), "2018a000-0000-4000-8000-000200000002");
    }
}
