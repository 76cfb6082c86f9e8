"""Customer value, the pure part (docs/value.md): net revenue in one base currency, each person's
historical value as of any time, and RFM scores and segments. No store here: the caller passes
the facts (engine.projections.facts) and the rules (engine.rules.ValueRules)."""

from .history import Historical, historical, to_base
from .rfm import Rfm, pareto_share, score_rfm

__all__ = ["Historical", "Rfm", "historical", "pareto_share", "score_rfm", "to_base"]
