"""The report's statistics: paired by seed, checked against scipy; Holm; no NaN for one seed."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from reports.stats import holm, paired_difference, t_halfwidth, verdict


def _seeded(effect: float, noise: float, n: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    seed_effect = rng.normal(0, 3.0, n)  # what a seed does to every arm alike
    base = 80 + seed_effect + rng.normal(0, noise, n)
    arm = 80 + effect + seed_effect + rng.normal(0, noise, n)
    return dict(enumerate(arm)), dict(enumerate(base))


def test_a_real_effect_has_a_paired_interval_that_excludes_zero():
    arm, base = _seeded(effect=2.0, noise=0.3)
    d = paired_difference(arm, base)
    a, b = list(arm.values()), list(base.values())
    assert d["p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    diffs = np.subtract(a, b)
    ci = stats.t.interval(0.95, len(diffs) - 1, loc=diffs.mean(), scale=stats.sem(diffs))
    assert d["mean"] - d["ci"] == pytest.approx(ci[0]) and d["mean"] + d["ci"] == pytest.approx(
        ci[1]
    )
    assert d["mean"] - d["ci"] > 0 and d["p"] < 0.05
    # unpaired, the seed-to-seed spread would hide it: pairing is what makes it visible
    assert stats.ttest_ind(a, b).pvalue > d["p"]


def test_no_effect_has_an_interval_that_contains_zero():
    arm, base = _seeded(effect=0.0, noise=1.0, seed=3)
    d = paired_difference(arm, base)
    assert d["mean"] - d["ci"] < 0 < d["mean"] + d["ci"] and d["p"] > 0.05
    assert d["p"] == pytest.approx(stats.ttest_rel(list(arm.values()), list(base.values())).pvalue)


def test_only_shared_seeds_are_paired_and_one_seed_has_no_interval():
    d = paired_difference({0: 91.0, 1: 92.0, 7: 50.0}, {0: 90.0, 1: 90.5})
    assert d["n"] == 2 and d["mean"] == pytest.approx(1.25)
    one = paired_difference({0: 91.0}, {0: 90.0})
    assert one["ci"] is None and np.isnan(one["p"])
    assert verdict(one["mean"], one["ci"], one["p"], one["n"]) == "1 paired seed, no interval"
    assert t_halfwidth([1.0]) is None


def test_holm_matches_its_definition():
    assert holm([0.01, 0.04, 0.03, float("nan")])[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(holm([0.01, float("nan")])[1])
