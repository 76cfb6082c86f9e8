"""The customer ladder, prospect -> first_buyer -> repeat -> loyal -> advocate, with health active /
at_risk / lapsed, declared in the ladder language from the [lifecycle] parameters (which keep
their meaning: they are this ladder's numbers)."""

from __future__ import annotations

from ..rules import LifecycleRules
from .model import LadderDef

CUSTOMER = "customer"


def customer_ladder(r: LifecycleRules) -> LadderDef:
    window = r.window_days
    loyal = [
        {"count": "purchases", "at_least": r.loyal_min_purchases},
        *(
            [{"count": "purchases", "at_least": r.loyal_min_recent_purchases, "within_days": window}]
            if r.loyal_min_recent_purchases >= 1
            else []
        ),
    ]
    signal = {
        "any": [
            {"count": "converted_referrals", "at_least": 1, "within_days": window},
            {"count": "good_reviews", "at_least": 1, "within_days": window},
            {"count": "promoter_answers", "at_least": 1, "within_days": window},
        ]
    }
    return LadderDef.model_validate(
        {
            "name": CUSTOMER,
            "description": "The customer ladder: buying, buying again, loyalty, advocacy ([lifecycle]).",
            "counts": {
                "converted_referrals": {"kinds": ["referral.converted"]},
                "good_reviews": {
                    "kinds": ["review.posted"],
                    "where": {"property": "rating", "at_least": r.advocate_min_rating},
                },
                "promoter_answers": {
                    "kinds": ["survey.answered"],
                    "where": {"property": "nps", "at_least": r.advocate_min_nps},
                },
            },
            "stages": [
                {"name": "prospect"},
                {"name": "first_buyer", "when": {"count": "purchases", "at_least": 1}},
                {"name": "repeat", "when": {"count": "purchases", "at_least": 2}},
                {"name": "loyal", "when": {"all": loyal}},
                {"name": "advocate", "when": {"all": [*loyal, signal]}},
            ],
            "health": [
                {"name": "active", "when": {"count": "purchases", "at_least": 1}},
                {
                    "name": "at_risk",
                    "when": {
                        "absent": "purchases",
                        "more_than_days": r.at_risk_min_days,
                        "gap_factor": r.at_risk_gap_factor,
                    },
                },
                {"name": "lapsed", "when": {"absent": "purchases", "more_than_days": r.lapsed_days}},
            ],
        }
    )
