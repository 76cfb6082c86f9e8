"""The value model (engine.value.model): BG/NBD and Gamma-Gamma on the CDNOW sample against the
published estimates, the predictions against simulations of the models' own stories, and the
value segments against a ranking written here."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.rules import ValueRules, ValueSegment
from engine.value import bgnbd, gamma_gamma
from engine.value.bgnbd import BgNbd
from engine.value.model import Model, Row, fit, predict, summarise, value_segments

FIXTURE = Path(__file__).parent.parent / "fixtures" / "cdnow_sample.txt"
CALIBRATION_END = date(1997, 9, 30)


def cdnow_days() -> dict[str, list[tuple[date, float]]]:
    """Each customer's transactions from the raw file: one per calendar day, dollars summed."""
    days: dict[str, dict[date, float]] = defaultdict(lambda: defaultdict(float))
    for line in FIXTURE.read_text().splitlines():
        customer, _sample, ymd, _cds, dollars = line.split()
        days[customer][date(int(ymd[:4]), int(ymd[4:6]), int(ymd[6:]))] += float(dollars)
    return {c: sorted(d.items()) for c, d in days.items()}


def cdnow_rows() -> dict[str, Row]:
    rows = {c: summarise(d, CALIBRATION_END) for c, d in cdnow_days().items()}
    return {c: r for c, r in rows.items() if r is not None}


def close(got: float, want: float, share: float) -> bool:
    return abs(got - want) <= share * abs(want)


def test_bgnbd_on_cdnow_gives_the_papers_estimates():
    rows = cdnow_rows()
    assert len(rows) == 2357
    x, t_x, T = (np.array([getattr(r, k) for r in rows.values()]) for k in ("x", "t_x", "T"))
    m = bgnbd.fit(x, t_x, T)
    # Fader, Hardie & Lee (2005), section 5: r 0.243, alpha 4.414, a 0.793, b 2.426, LL -9582.4
    for got, want in ((m.r, 0.243), (m.alpha, 4.414), (m.a, 0.793), (m.b, 2.426)):
        assert close(got, want, 0.005), (got, want)
    assert abs(m.log_likelihood - -9582.4) <= 0.5
    # the likelihood is a maximum: any nudge of a parameter lowers it
    for i in range(4):
        for step in (0.99, 1.01):
            p = [m.r, m.alpha, m.a, m.b]
            p[i] *= step
            assert bgnbd.log_likelihood(tuple(p), x, t_x, T).sum() < m.log_likelihood


def test_gamma_gamma_on_cdnow_gives_the_notes_estimates():
    rows = cdnow_rows()
    x = np.array([r.x for r in rows.values()])
    m = np.array([r.m for r in rows.values()])
    assert gamma_gamma.usable(x, m).sum() == 946  # the note's customers with a repeat purchase
    g = gamma_gamma.fit(x, m)
    # Fader & Hardie (2013): p 6.25, q 3.74, gamma 15.44
    for got, want in ((g.p, 6.25), (g.q, 3.74), (g.gamma, 15.44)):
        assert close(got, want, 0.01), (got, want)


def test_a_fit_by_distinct_rows_equals_the_fit_by_person():
    rows = cdnow_rows()
    model = fit(rows, CALIBRATION_END, ValueRules(base_currency="USD"))
    x, t_x, T = (np.array([getattr(r, k) for r in rows.values()]) for k in ("x", "t_x", "T"))
    by_person = bgnbd.fit(x, t_x, T)
    assert math.isclose(model.bgnbd.log_likelihood, by_person.log_likelihood, rel_tol=1e-9)
    assert math.isclose(model.bgnbd.r, by_person.r, rel_tol=1e-4)
    assert model.persons == 2357 and model.spenders == 946
    assert Model.from_dict(model.as_dict()) == model
    again = fit(dict(reversed(rows.items())), CALIBRATION_END, ValueRules(base_currency="USD"))
    assert again.model_id == model.model_id  # the data and the parameters, not the order they came in
    other = fit(rows, CALIBRATION_END, ValueRules(base_currency="USD", clv_months=24))
    assert other.model_id != model.model_id  # a different horizon is a different model


PARAMS = BgNbd(r=0.8, alpha=6.0, a=0.9, b=2.5, log_likelihood=0.0)


def simulate(m: BgNbd, n: int, weeks: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BG/NBD's story, person by person from time 0 (their first transaction): purchases at rate
    λ ~ Gamma(r, α) while alive, dropping out after each repeat with probability p ~ Beta(a, b). Returns
    x and t_x by `weeks`, whether each is alive then, and their repeat transactions in the next `weeks`."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(m.r, 1 / m.alpha, n)
    p = rng.beta(m.a, m.b, n)
    x, t_x, alive, later = (np.zeros(n) for _ in range(4))
    for i in range(n):
        t, count, last, after = 0.0, 0, 0.0, 0
        up = True  # the first transaction (time 0) is no chance to drop out: the repeats are
        while up:
            t += rng.exponential(1 / lam[i])
            if t > 2 * weeks:
                break
            if t <= weeks:
                count, last = count + 1, t
            else:
                after += 1
            if rng.random() < p[i]:
                up = False
        x[i], t_x[i], later[i] = count, last, after
        alive[i] = up or t > weeks  # still alive at `weeks`: it dropped out later, if at all
    return x, t_x, alive, later


def test_predictions_match_a_simulation_of_the_model():
    weeks, n = 30.0, 40_000
    x, t_x, alive, later = simulate(PARAMS, n, weeks, seed=7)
    T = np.full(n, weeks)
    predicted_alive = bgnbd.p_alive(PARAMS, x, t_x, T)
    predicted_later = bgnbd.expected(PARAMS, weeks, x, t_x, T)
    # Overall and among those with x repeat transactions: the model's conditional expectations
    # are the averages of what its own story produces (within sampling error).
    assert abs(predicted_alive.mean() - alive.mean()) < 0.01
    assert abs(predicted_later.mean() - later.mean()) < 0.03 * later.mean()
    for k in (0, 1, 2, 4):
        sel = x == k
        assert abs(predicted_alive[sel].mean() - alive[sel].mean()) < 0.02, k
        assert abs(predicted_later[sel].mean() - later[sel].mean()) < 0.08 * max(later[sel].mean(), 0.1), k
    # A newcomer's expectation is the population's curve (the paper's equations 7 and 10 agree).
    from scipy.special import hyp2f1

    r, alpha, a, b = PARAMS.r, PARAMS.alpha, PARAMS.a, PARAMS.b
    newcomer = (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + 20)) ** r * hyp2f1(r, b, a + b - 1, 20 / (alpha + 20)))
    assert math.isclose(float(bgnbd.expected(PARAMS, 20.0, 0, 0, 0)[()]), newcomer)  # the paper's equation 7


def test_expected_spend_weighs_a_persons_average_against_the_population():
    g = gamma_gamma.GammaGamma(p=6.0, q=4.0, gamma=15.0, log_likelihood=0.0)
    population = g.p * g.gamma / (g.q - 1)
    assert math.isclose(float(gamma_gamma.expected_spend(g, 0, 0)[()]), population)
    few, many = (float(gamma_gamma.expected_spend(g, n, 100.0)[()]) for n in (1, 50))
    assert population < few < many < 100.0  # more transactions, more weight on one's own average


def brute_segments(clv: dict[str, float], shares: list[tuple[str, float]], rest: str) -> dict[str, str]:
    """Independent: sort best first; the person at rank i (0-based, equal CLVs taking the best rank
    of their group) is in the first segment whose cumulative share of n, rounded up, exceeds i."""
    order = sorted(clv, key=lambda p: -clv[p])
    n = len(order)
    out = {}
    for p in order:
        rank = min(i for i, q in enumerate(order) if clv[q] == clv[p])
        total, name = 0.0, rest
        for seg, share in shares:
            total += share
            if rank < math.ceil(round(n * total, 9)):
                name = seg
                break
        out[p] = name
    return out


@given(
    st.dictionaries(
        st.text("abcdef", min_size=1, max_size=3), st.sampled_from([0.0, 1.0, 2.5, 10.0, 99.0]), min_size=1
    ),
    st.lists(st.floats(0.05, 0.6), min_size=1, max_size=3),
)
def test_value_segments_rank_by_clv(clv, shares):
    if sum(shares) > 1:
        shares = [s / sum(shares) for s in shares]
    named = [(f"s{i}", s) for i, s in enumerate(shares)]
    segments = [ValueSegment(name=n, share=s) for n, s in named]
    assert value_segments(clv, segments, "rest") == brute_segments(clv, named, "rest")


def test_the_models_cutoffs_give_the_ranked_segments_at_the_calibration_end():
    rows = cdnow_rows()
    model = fit(rows, CALIBRATION_END, ValueRules(base_currency="USD"))
    predicted = predict(model, rows)
    clv = {p: pr.clv for p, pr in predicted.items()}
    assert all(v is not None for v in clv.values())
    ranked = brute_segments(clv, [("top", 0.2), ("middle", 0.3)], "rest")  # type: ignore[arg-type]
    assert {p: pr.value_segment for p, pr in predicted.items()} == ranked
    tops = sum(1 for s in ranked.values() if s == "top")
    assert tops == math.ceil(0.2 * 2357)  # CLVs of the best fifth are distinct here
    assert [n for n, _ in model.segments] == ["top", "middle"]


def test_summarise_follows_the_papers_conventions():
    days = [(date(1997, 1, 1), 10.0), (date(1997, 1, 15), 20.0), (date(1997, 2, 12), 40.0), (date(1997, 12, 1), 5.0)]
    row = summarise(days, date(1997, 3, 1))
    assert row == Row(x=2, t_x=6.0, T=59 / 7, m=30.0)  # the first transaction is not a repeat
    assert summarise(days, date(1996, 12, 31)) is None
    assert summarise(days[:1], date(1997, 1, 1)) == Row(0, 0.0, 0.0, 0.0)


def test_a_fit_needs_someone():
    with pytest.raises(ValueError, match="nothing to fit"):
        fit({}, CALIBRATION_END, ValueRules())


def test_rfm_against_the_models_cut_points_equals_rfm_among_the_persons_fitted_to():
    from engine.rules import DEFAULT_RFM_SEGMENTS
    from engine.value import score_rfm

    days = cdnow_days()
    rfm = {}
    for c, d in days.items():
        kept = [(day, amount) for day, amount in d if day <= CALIBRATION_END]
        rfm[c] = ((CALIBRATION_END - kept[-1][0]).days + 0.5, len(kept), round(sum(a for _, a in kept), 2))
    model = fit(cdnow_rows(), CALIBRATION_END, ValueRules(base_currency="USD"), rfm)
    ranked = score_rfm(rfm, DEFAULT_RFM_SEGMENTS)
    assert all(model.rfm_scores(*rfm[c]) == (x.r, x.f, x.m) for c, x in ranked.items())
    assert Model.from_dict(model.as_dict()) == model
    # someone new, outside the population: scored as if among them
    assert model.rfm_scores(0.0, 1000, 1e9) == (5, 5, 5) and model.rfm_scores(1e6, 1, 0.0) == (1, 1, 1)


def test_a_person_scores_the_same_alone_and_among_many():
    """A decision scores one person; a fit's cut-offs and a list score many: the same bits, or a
    person on a cut-off could fall either side of it."""
    rows = cdnow_rows()
    model = fit(rows, CALIBRATION_END, ValueRules(base_currency="USD"))
    many = predict(model, rows)
    assert all(predict(model, {p: rows[p]})[p] == many[p] for p in list(rows)[::7])
    assert predict(model, dict(reversed(rows.items()))) == many


def test_an_empty_value_segment_has_no_cut_off_and_survives_a_round_trip():
    import orjson

    same = Row(x=6, t_x=19.0, T=20.0, m=90.0)
    rows = {f"p{i}": same for i in range(6)} | {f"q{k}": Row(k, 3.0 * k, 30.0, 10.0 * k) for k in range(1, 5)}
    model = fit(rows, CALIBRATION_END, ValueRules())
    # six equal CLVs share the better segment: top holds 6 of 10, middle (up to the 5th) nobody
    assert [(name, lowest is None) for name, lowest in model.segments] == [("top", False), ("middle", True)]
    stored = Model.from_dict(orjson.loads(orjson.dumps(model.as_dict())))  # as the store keeps it
    assert stored == model
    assert {p.value_segment for p in predict(stored, rows).values()} <= {"top", "rest"}


def test_a_fit_needs_repeat_purchases():
    once = {f"p{i}": Row(x=0, t_x=0.0, T=float(i + 1), m=0.0) for i in range(50)}
    with pytest.raises(ValueError, match="nobody had bought twice"):
        fit(once, CALIBRATION_END, ValueRules())


def test_heavy_tailed_spend_gives_no_expected_spend_rather_than_a_negative_one():
    g = gamma_gamma.GammaGamma(p=2.0, q=0.7, gamma=15.0, log_likelihood=0.0)  # q <= 1: no population mean
    spend = gamma_gamma.expected_spend(g, [0, 1, 5], [0.0, 40.0, 40.0])
    assert np.isnan(spend[0]) and spend[1] > 0 and spend[2] > 0  # p x + q - 1 > 0 once x >= 1 here
    assert np.isnan(gamma_gamma.expected_spend(gamma_gamma.GammaGamma(0.1, 0.5, 15.0, 0.0), [1], [40.0])[0])


def test_expected_purchases_stay_finite_when_every_rate_is_alike():
    """Persons who all buy alike drive r and alpha to huge values; scipy 1.17's hyp2f1 gives nan
    there (earlier versions a number), and every CLV was None. The confluent limit takes over,
    and agrees with the exact expression where that one is still computed."""
    a, b, x, t_x, T, t = 0.7347, 5.1107, 6, 19.0, 20.0, 13.0
    values = []
    for r in (5000.0, 42023.3):
        m = BgNbd(r=r, alpha=3.2766 * r, a=a, b=b, log_likelihood=0.0)
        values.append(float(bgnbd.expected(m, t, x, t_x, T)))
    assert all(math.isfinite(v) and v > 0 for v in values), values
    assert values[1] == pytest.approx(values[0], rel=1e-4)  # the same rates: the same expectation
