"""Fixed reference data: the demo company's value-chain activities and initiatives.

The same for every seed and every account count. Two periods (the year before
`as_of` and the year of `as_of`), so a user can compare years. The numbers are
chosen so the cost-vs-value analysis is interesting: each period has activities
in all four quadrants, an unnecessary activity (100 % non-value-added), activity
cost drivers on about half of the activities whose AQ·SP equals the annual cost,
and high-leak activities that nobody has an initiative for yet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Activity:
    code: str
    name: str
    kind: str
    category: str
    team: str
    systems: tuple[str, ...]
    cost: float  # annual cost in the current period
    prior_cost: float  # annual cost in the previous period
    value: float
    prior_value: float
    metric: str
    actual: float
    prior_actual: float
    target: float
    direction: str
    enables: tuple[str, ...] = ()
    # Activity-based costing: driver, SQ, AQ(current), AQ(prior), SP, necessary.
    driver: tuple[str, float, float, float, float, bool] | None = None


_HB, _LB = "higher_is_better", "lower_is_better"

# Costs in USD. Where a driver is given, AQ·SP equals the annual cost of that period.
ACTIVITIES: tuple[_Activity, ...] = (
    _Activity(
        "INB-DATAINTAKE",
        "Customer data intake & integrations",
        "primary",
        "inbound_logistics",
        "Integrations",
        ("Fivetran", "Airflow", "Postgres"),
        420_000,
        380_000,
        5.5,
        5.0,
        "Integration success rate (%)",
        93.5,
        91.0,
        98.0,
        _HB,
    ),
    _Activity(
        "OPS-HOSTING",
        "Cloud hosting & site reliability",
        "primary",
        "operations",
        "Platform Engineering",
        ("AWS", "Kubernetes", "Datadog", "PagerDuty"),
        2_340_000,
        2_080_000,
        8.5,
        8.5,
        "Uptime (%)",
        99.82,
        99.9,
        99.95,
        _HB,
        driver=("Compute hours (thousands)", 3_000, 3_600, 3_200, 650.0, True),
    ),
    _Activity(
        "OPS-RELEASE",
        "Release management & QA",
        "primary",
        "operations",
        "Platform Engineering",
        ("GitHub Actions", "Jira"),
        560_000,
        540_000,
        6.5,
        6.0,
        "Change failure rate (%)",
        12.0,
        15.0,
        8.0,
        _LB,
    ),
    _Activity(
        "OUT-ONBOARD",
        "Customer onboarding & implementation",
        "primary",
        "outbound_logistics",
        "Professional Services",
        ("Salesforce", "Rocketlane", "Zoom"),
        920_000,
        800_000,
        8.0,
        7.5,
        "Days to first value",
        34.0,
        41.0,
        21.0,
        _LB,
        driver=("Onboarding projects", 420, 460, 400, 2_000.0, True),
    ),
    _Activity(
        "OUT-PROVISION",
        "Licence provisioning & delivery",
        "primary",
        "outbound_logistics",
        "Platform Engineering",
        ("Stripe", "Okta"),
        150_000,
        160_000,
        3.0,
        3.0,
        "Provisioning time (minutes)",
        8.0,
        12.0,
        10.0,
        _LB,
    ),
    _Activity(
        "MKT-CAMPAIGNS",
        "Demand-generation campaigns",
        "primary",
        "marketing_sales",
        "Marketing",
        ("HubSpot", "Google Ads", "LinkedIn Ads"),
        1_800_000,
        1_500_000,
        4.0,
        4.5,
        "Cost per sales-qualified lead (USD)",
        1_450.0,
        1_200.0,
        900.0,
        _LB,
        driver=("Campaigns run", 100, 150, 125, 12_000.0, True),
    ),
    _Activity(
        "MKT-EVENTS",
        "Trade-show sponsorships",
        "primary",
        "marketing_sales",
        "Marketing",
        ("HubSpot", "Eventbrite"),
        1_300_000,
        1_250_000,
        1.5,
        2.0,
        "Pipeline sourced (USD thousands)",
        420.0,
        510.0,
        1_200.0,
        _HB,
        driver=("Trade-show days", 0, 26, 25, 50_000.0, False),
    ),
    _Activity(
        "SAL-DIRECT",
        "Direct sales",
        "primary",
        "marketing_sales",
        "Sales",
        ("Salesforce", "Gong", "DocuSign"),
        2_600_000,
        2_400_000,
        7.0,
        7.0,
        "Win rate (%)",
        22.0,
        24.0,
        25.0,
        _HB,
    ),
    _Activity(
        "SRV-SUPPORT",
        "Customer support",
        "primary",
        "service",
        "Support",
        ("Zendesk", "Slack", "Statuspage"),
        1_260_000,
        1_100_000,
        6.5,
        7.0,
        "First response time (hours)",
        6.5,
        5.0,
        4.0,
        _LB,
        driver=("Tickets handled", 16_000, 21_000, 19_000, 60.0, True),
    ),
    _Activity(
        "SRV-CSM",
        "Customer success management",
        "primary",
        "service",
        "Customer Success",
        ("Gainsight", "Salesforce"),
        880_000,
        760_000,
        9.0,
        8.5,
        "Net revenue retention (%)",
        104.0,
        106.0,
        110.0,
        _HB,
    ),
    _Activity(
        "INF-BILLING",
        "Billing, finance & legal",
        "support",
        "firm_infrastructure",
        "Finance",
        ("NetSuite", "Stripe", "Ironclad"),
        660_000,
        620_000,
        3.0,
        3.0,
        "Days sales outstanding",
        48.0,
        44.0,
        35.0,
        _LB,
        enables=("SAL-DIRECT", "SRV-CSM", "OUT-PROVISION"),
        driver=("Invoices processed", 24_000, 30_000, 28_000, 22.0, True),
    ),
    _Activity(
        "INF-CRMDATA",
        "CRM & data platform administration",
        "support",
        "firm_infrastructure",
        "Revenue Operations",
        ("Salesforce", "Snowflake", "dbt"),
        540_000,
        480_000,
        4.5,
        4.0,
        "CRM data completeness (%)",
        81.0,
        76.0,
        95.0,
        _HB,
        enables=("SAL-DIRECT", "MKT-CAMPAIGNS", "SRV-CSM"),
    ),
    _Activity(
        "HR-RECRUIT",
        "Recruiting & people operations",
        "support",
        "human_resources",
        "People",
        ("Greenhouse", "Workday"),
        768_000,
        720_000,
        2.5,
        2.5,
        "Time to hire (days)",
        52.0,
        47.0,
        40.0,
        _LB,
        enables=("SAL-DIRECT", "SRV-SUPPORT", "OPS-HOSTING"),
        driver=("Hires", 40, 48, 45, 16_000.0, True),
    ),
    _Activity(
        "HR-ENABLE",
        "Employee enablement & training",
        "support",
        "human_resources",
        "People",
        ("Lessonly", "Notion"),
        260_000,
        240_000,
        4.0,
        3.5,
        "Sales ramp time (weeks)",
        14.0,
        16.0,
        12.0,
        _LB,
        enables=("SAL-DIRECT", "SRV-SUPPORT", "OUT-ONBOARD"),
    ),
    _Activity(
        "TEC-RND",
        "Product research & development",
        "support",
        "technology_development",
        "Product & Engineering",
        ("GitHub", "Linear", "Figma"),
        4_500_000,
        4_100_000,
        9.5,
        9.5,
        "Features shipped per quarter",
        11.0,
        9.0,
        12.0,
        _HB,
        enables=("OPS-HOSTING", "OUT-ONBOARD", "SRV-SUPPORT", "INB-DATAINTAKE"),
    ),
    _Activity(
        "PRC-VENDORS",
        "Vendor & cloud procurement",
        "support",
        "procurement",
        "Finance",
        ("Vendr", "NetSuite"),
        297_500,
        280_000,
        2.0,
        2.0,
        "Spend under contract (%)",
        72.0,
        70.0,
        90.0,
        _HB,
        enables=("OPS-HOSTING", "MKT-EVENTS"),
        driver=("Vendor contracts managed", 60, 85, 80, 3_500.0, True),
    ),
)


@dataclass(frozen=True)
class _Initiative:
    activity: str
    prior_period: bool
    description: str
    type: str
    advantage: str | None
    est_cost: float
    benefit: float
    owner: str
    due: tuple[int, int, int]  # (years after the current period's year, month, day)
    status: str


INITIATIVES: tuple[_Initiative, ...] = (
    _Initiative(
        "OPS-HOSTING",
        True,
        "Move steady-state compute to a 1-year savings plan",
        "renegotiate",
        "cost",
        25_000,
        210_000,
        "Platform Engineering",
        (-1, 9, 30),
        "done",
    ),
    _Initiative(
        "OPS-HOSTING",
        False,
        "Renegotiate the cloud commit for a 3-year term",
        "renegotiate",
        "cost",
        40_000,
        300_000,
        "Finance",
        (0, 12, 15),
        "in_progress",
    ),
    _Initiative(
        "OPS-HOSTING",
        False,
        "Automate right-sizing and autoscaling of idle clusters",
        "automate",
        "cost",
        120_000,
        380_000,
        "Platform Engineering",
        (1, 3, 31),
        "proposed",
    ),
    _Initiative(
        "SRV-SUPPORT",
        False,
        "Self-service help centre with AI ticket triage",
        "automate",
        "cost",
        150_000,
        260_000,
        "Support",
        (1, 2, 28),
        "approved",
    ),
    _Initiative(
        "SRV-CSM",
        False,
        "Add three CSMs for Mid-Market renewals",
        "invest",
        "differentiation",
        330_000,
        600_000,
        "Customer Success",
        (1, 6, 30),
        "proposed",
    ),
    _Initiative(
        "OUT-ONBOARD",
        False,
        "Templated onboarding playbooks by segment",
        "streamline",
        "differentiation",
        60_000,
        180_000,
        "Professional Services",
        (0, 11, 30),
        "in_progress",
    ),
    _Initiative(
        "MKT-EVENTS",
        False,
        "Exit trade-show sponsorships; keep two flagship events",
        "eliminate",
        "cost",
        10_000,
        1_100_000,
        "Marketing",
        (1, 1, 31),
        "proposed",
    ),
    _Initiative(
        "SAL-DIRECT",
        False,
        "Deal desk and CPQ to shorten the quote cycle",
        "streamline",
        "cost",
        90_000,
        210_000,
        "Revenue Operations",
        (1, 3, 31),
        "proposed",
    ),
    _Initiative(
        "TEC-RND",
        False,
        "Usage-analytics module customers can see",
        "invest",
        "differentiation",
        400_000,
        700_000,
        "Product & Engineering",
        (1, 6, 30),
        "approved",
    ),
    _Initiative(
        "INF-BILLING",
        False,
        "Smart dunning: automatic card-retry and reminders",
        "automate",
        "cost",
        45_000,
        120_000,
        "Finance",
        (0, 12, 31),
        "in_progress",
    ),
    _Initiative(
        "HR-RECRUIT",
        False,
        "Renegotiate recruiting-agency fees",
        "renegotiate",
        "cost",
        5_000,
        90_000,
        "People",
        (0, 12, 31),
        "proposed",
    ),
    _Initiative(
        "PRC-VENDORS",
        False,
        "Consolidate SaaS vendors onto one procurement portal",
        "streamline",
        None,
        20_000,
        15_000,
        "Finance",
        (1, 4, 30),
        "proposed",
    ),
    _Initiative(
        "HR-ENABLE",
        True,
        "Quarterly all-hands value workshops",
        "invest",
        None,
        35_000,
        10_000,
        "People",
        (-1, 12, 31),
        "cancelled",
    ),
)


def periods_for(as_of: dt.date) -> tuple[str, str]:
    """The two value-chain periods: the year before `as_of` and the year of `as_of`."""
    return str(as_of.year - 1), str(as_of.year)


def activity_rows(as_of: dt.date) -> list[dict[str, Any]]:
    """Value-chain activity rows for both periods."""
    prior, current = periods_for(as_of)
    rows: list[dict[str, Any]] = []
    for period, is_current in ((prior, False), (current, True)):
        for a in ACTIVITIES:
            driver: dict[str, Any] = {
                "cost_driver": None,
                "std_quantity": None,
                "actual_quantity": None,
                "std_price": None,
                "necessary": None,
            }
            cost = a.cost if is_current else a.prior_cost
            if a.driver is not None:
                name, sq, aq, aq_prior, sp, necessary = a.driver
                aq_used = aq if is_current else aq_prior
                cost = aq_used * sp
                driver = {
                    "cost_driver": name,
                    "std_quantity": float(sq),
                    "actual_quantity": float(aq_used),
                    "std_price": sp,
                    "necessary": necessary,
                }
            rows.append(
                {
                    "id": f"{a.code}-{period}",
                    "name": a.name,
                    "kind": a.kind,
                    "porter_category": a.category,
                    "owner_team": a.team,
                    "systems": list(a.systems),
                    "period": period,
                    "annual_cost": float(cost),
                    "value_score": a.value if is_current else a.prior_value,
                    "perf_metric": a.metric,
                    "perf_actual": a.actual if is_current else a.prior_actual,
                    "perf_target": a.target,
                    "perf_direction": a.direction,
                    "enables": [f"{code}-{period}" for code in a.enables],
                    **driver,
                }
            )
    return rows


def initiative_rows(as_of: dt.date) -> list[dict[str, Any]]:
    """Initiative rows, ids INI-001.. in a fixed order."""
    prior, current = periods_for(as_of)
    rows: list[dict[str, Any]] = []
    for i, ini in enumerate(INITIATIVES, start=1):
        years, month, day = ini.due
        rows.append(
            {
                "id": f"INI-{i:03d}",
                "activity_id": f"{ini.activity}-{prior if ini.prior_period else current}",
                "description": ini.description,
                "type": ini.type,
                "advantage": ini.advantage,
                "est_cost": float(ini.est_cost),
                "est_annual_benefit": float(ini.benefit),
                "owner": ini.owner,
                "due": dt.date(as_of.year + years, month, day),
                "status": ini.status,
            }
        )
    return rows
