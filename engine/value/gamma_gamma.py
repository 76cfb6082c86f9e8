"""Gamma-Gamma (Fader & Hardie, "The Gamma-Gamma model of monetary value", 2013): what a person's
transactions will be worth on average.

A person's transaction values are Gamma(p, ν) around their own mean, with ν ~ Gamma(q, γ) across
persons; spend is taken as independent of how often one buys. Fitted by maximum likelihood over the
persons with at least one repeat transaction and a positive average repeat spend m_x (the average
of their x repeat transactions, the first left out as in the note), on a log scale like BG/NBD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import gammaln

from .bgnbd import Array, _arrays


@dataclass(frozen=True)
class GammaGamma:
    p: float
    q: float
    gamma: float
    log_likelihood: float

    def as_dict(self) -> dict[str, float]:
        return {"p": self.p, "q": self.q, "gamma": self.gamma, "log_likelihood": self.log_likelihood}


def log_likelihood(params: tuple[float, float, float], x: ArrayLike, m: ArrayLike) -> Array:
    """Each person's log-likelihood of their average repeat spend m over x repeat transactions."""
    p, q, gamma = params
    x, m = _arrays(x, m)
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(gamma)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(gamma + m * x)
    )


def usable(x: ArrayLike, m: ArrayLike) -> NDArray[np.bool_]:
    """Which persons the model is fitted to: a repeat transaction and a positive average spend."""
    xs, ms = _arrays(x, m)
    return (xs > 0) & (ms > 0)


def fit(x: ArrayLike, m: ArrayLike) -> GammaGamma:
    keep = usable(x, m)
    xs, ms = (a[keep] for a in _arrays(x, m))
    if not len(xs):
        raise ValueError("no person with a repeat transaction of positive value to fit the spend model to")

    def minus(theta: Array) -> float:
        p, q, gamma = np.exp(theta)
        value = -float(log_likelihood((p, q, gamma), xs, ms).mean())
        return value if np.isfinite(value) else 1e300

    found = minimize(minus, np.zeros(3), method="BFGS", options={"gtol": 1e-7, "maxiter": 500})
    p, q, gamma = (float(v) for v in np.exp(found.x))
    if found.fun >= 1e299 or not all(np.isfinite(v) and v > 0 for v in (p, q, gamma)):
        raise ValueError(f"the Gamma-Gamma fit failed ({found.message}): the data may be too few or too uniform")
    return GammaGamma(p, q, gamma, float(-found.fun * len(xs)))


def expected_spend(g: GammaGamma, x: ArrayLike, m: ArrayLike) -> Array:
    """A person's expected average transaction value: their own average weighed against the
    population's mean pγ/(q-1) by how many repeat transactions it rests on (the note's equation 5).
    A person with no repeat transaction gets the population's mean (which needs q > 1)."""
    x, m = _arrays(x, m)
    m = np.where(x > 0, m, 0.0)
    denominator = g.p * x + g.q - 1
    # With q <= 1 (heavy-tailed spend) the population has no mean: where the weight of one's own
    # average does not make up for it, there is no expected spend (NaN: no CLV), never a negative one.
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, (g.p * g.gamma + g.p * x * m) / denominator, np.nan)
