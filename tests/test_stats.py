"""The statistics behind A/B decisions and holdout lift, checked against
published values (no database needed)."""
from collections import Counter

import pytest

from odoo.addons.behavioral_email.tools import stats


def test_hash_fraction_is_stable_and_uniform():
    assert stats.hash_fraction("12:7") == stats.hash_fraction("12:7")
    assert stats.hash_fraction("12:7") != stats.hash_fraction("7:12")
    values = [stats.hash_fraction(f"{i}:3") for i in range(10000)]
    assert all(0 <= value < 1 for value in values)
    deciles = Counter(int(value * 10) for value in values)
    # 1 000 expected per decile, standard deviation 30
    assert all(850 < deciles[d] < 1150 for d in range(10)), deciles


def test_pick_weighted_follows_weights():
    picks = Counter(stats.pick_weighted(f"{i}:42", [("A", 70), ("B", 20), ("C", 10)]) for i in range(10000))
    assert 6800 < picks["A"] < 7200
    assert 1850 < picks["B"] < 2150
    assert 880 < picks["C"] < 1120
    assert stats.pick_weighted("5:42", [("A", 1)]) == "A"
    with pytest.raises(ValueError):
        stats.pick_weighted("5:42", [])


def test_two_proportion_ztest():
    z, p = stats.two_proportion_ztest(24, 200, 8, 200)
    assert z == pytest.approx(2.9488, abs=1e-4)
    assert p == pytest.approx(0.00319, abs=1e-5)
    z, p = stats.two_proportion_ztest(8, 200, 24, 200)
    assert z < 0 and p == pytest.approx(0.00319, abs=1e-5)
    assert stats.two_proportion_ztest(0, 100, 0, 100) == (0.0, 1.0)
    assert stats.two_proportion_ztest(5, 0, 1, 10) == (0.0, 1.0)


def test_student_t_p_values():
    # two-sided critical values of Student's t tables
    assert stats.student_t_two_sided_p(2.228, 10) == pytest.approx(0.05, abs=1e-4)
    assert stats.student_t_two_sided_p(2.576, 1e6) == pytest.approx(0.01, abs=1e-4)
    assert stats.student_t_two_sided_p(12.706, 1) == pytest.approx(0.05, abs=1e-4)
    assert stats.student_t_two_sided_p(0.0, 5) == pytest.approx(1.0)


def test_welch_ttest():
    # mean 10, variance 4, n 30 against mean 8, variance 9, n 40
    t, df, p = stats.welch_ttest(10, 4, 30, 8, 9, 40)
    assert t == pytest.approx(3.3411, abs=1e-4)
    assert df == pytest.approx(67.19, abs=0.01)
    assert p == pytest.approx(0.00137, abs=2e-5)
    mean, variance = stats.mean_and_variance(4, 10.0, 40.0)
    assert (mean, variance) == (2.5, pytest.approx(5.0))


def test_newcombe_interval_matches_newcombe_1998():
    # Newcombe (1998), table II, example (a): 56/70 - 48/80
    diff, low, high = stats.newcombe_interval(56, 70, 48, 80)
    assert diff == pytest.approx(0.2)
    assert low == pytest.approx(0.0524, abs=1e-4)
    assert high == pytest.approx(0.3339, abs=1e-4)


def test_wilson_and_ratio_intervals():
    assert stats.wilson_interval(81, 263) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    ratio, low, high = stats.risk_ratio_interval(30, 100, 20, 100)
    assert ratio == pytest.approx(1.5)
    assert low == pytest.approx(0.916, abs=1e-3)
    assert high == pytest.approx(2.456, abs=1e-3)
    assert stats.risk_ratio_interval(3, 100, 0, 100) == (None, None, None)


def test_mean_difference_interval():
    diff, low, high = stats.mean_difference_interval(50, 500, 9000, 50, 300, 5000)
    assert diff == pytest.approx(4.0)
    # Welch: variances 4000/49 and 3200/49, se = sqrt(81.63/50 + 65.31/50)
    # = 1.7143 on 96.8 degrees of freedom, t = 1.9849
    assert low == pytest.approx(4.0 - 1.9849 * 1.7143, abs=2e-3)
    assert high == pytest.approx(4.0 + 1.9849 * 1.7143, abs=2e-3)


def test_decide_winner_rates():
    A = stats.Arm(key="A", n=200, successes=8)
    B = stats.Arm(key="B", n=200, successes=24)
    decision = stats.decide_winner([A, B], "click", 0.95, 100)
    assert (decision.winner, decision.reason) == ("B", "winner")
    assert decision.comparisons[0].p_value == pytest.approx(0.00319, abs=1e-5)
    # not before the sample
    assert stats.decide_winner([A, B], "click", 0.95, 201).reason == "sample"
    # not when the difference could be chance
    close = stats.Arm(key="B", n=200, successes=12)
    assert stats.decide_winner([A, close], "click", 0.95, 100).reason == "not_significant"
    # a stricter confidence can refuse what a looser one accepts
    mild = stats.Arm(key="B", n=200, successes=17)
    assert stats.decide_winner([A, mild], "click", 0.90, 100).winner == "B"
    assert stats.decide_winner([A, mild], "click", 0.99, 100).winner is None
    assert stats.decide_winner([A, A._replace(key="C")], "click", 0.95, 100).reason == "tie"


def test_decide_winner_corrects_for_many_variants():
    # p = 0.0032 against each other arm: enough with 2 arms at 0.99, not
    # with 5 (threshold 0.01 / 4 = 0.0025)
    best = stats.Arm(key="B", n=200, successes=24)
    others = [stats.Arm(key=key, n=200, successes=8) for key in "ACDE"]
    assert stats.decide_winner([best, others[0]], "click", 0.99, 100).winner == "B"
    decision = stats.decide_winner([best, *others], "click", 0.99, 100)
    assert decision.reason == "not_significant"
    assert decision.alpha == pytest.approx(0.0025)


def test_guardrail_blocks_a_winner_that_drives_unsubscribes():
    A = stats.Arm(key="A", n=300, successes=10, unsubscribed=1, bounced=3)
    B = stats.Arm(key="B", n=300, successes=40, unsubscribed=12, bounced=3)
    decision = stats.decide_winner([A, B], "click", 0.95, 100)
    assert (decision.winner, decision.reason, decision.best) == (None, "guardrail", "B")
    bouncing = B._replace(unsubscribed=1, bounced=20)
    assert stats.decide_winner([A, bouncing], "click", 0.95, 100).reason == "guardrail"
    assert stats.decide_winner([A, B._replace(unsubscribed=2)], "click", 0.95, 100).winner == "B"


def test_decide_winner_revenue():
    # B: 30 orders of 100 among 300 recipients; A: 10 orders of 100
    A = stats.Arm(key="A", n=300, total=1000.0, total_sq=10 * 100.0 ** 2)
    B = stats.Arm(key="B", n=300, total=3000.0, total_sq=30 * 100.0 ** 2)
    decision = stats.decide_winner([A, B], "revenue", 0.95, 100)
    assert decision.winner == "B"
    # means 3.33 and 10, variances 323 and 903: t = 3.30, p = 0.001
    assert decision.comparisons[0].statistic == pytest.approx(3.297, abs=1e-3)
    assert decision.comparisons[0].p_value == pytest.approx(0.00105, abs=2e-5)
    same = B._replace(total=1100.0, total_sq=11 * 100.0 ** 2)
    assert stats.decide_winner([A, same], "revenue", 0.95, 100).winner is None
