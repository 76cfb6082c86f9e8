"""Customer value, the pure part (docs/value.md): net revenue in one base currency, each person's
historical value as of any time, RFM scores and segments, and the predictive model (BG/NBD and
Gamma-Gamma: P(alive), expected transactions, CLV, value segments, in engine.value.model, which
numpy and scipy are loaded for only when asked). No store here: the caller passes the facts
(engine.projections.facts), the rules (engine.rules.ValueRules) and the model."""

from .history import Historical, historical, rfm_of, transactions
from .rfm import Rfm, pareto_share, score_rfm

__all__ = [
    "Historical",
    "Rfm",
    "historical",
    "pareto_share",
    "rfm_of",
    "score_rfm",
    "transactions",
]
