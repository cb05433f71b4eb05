"""Statistics for the sequences' measurements, as pure functions.

Nothing here touches the database: the models read the counts in one query
and hand them over, so that every formula can be checked on its own
(tests/test_stats.py).

* Assignment: :func:`hash_fraction` and :func:`pick_weighted` split customers
  deterministically (A/B variants, holdout groups): the same key always lands
  in the same group, so a retried step never switches a customer's variant.
* A/B decisions: :func:`decide_winner`, with a two-proportion z-test for rates
  and Welch's t-test for revenue per recipient.
* Holdout lift: :func:`newcombe_interval` (difference of two proportions),
  :func:`risk_ratio_interval` (relative lift) and :func:`mean_difference_interval`
  (revenue per entrant).
"""
import hashlib
import math
from collections import namedtuple
from statistics import NormalDist

_NORMAL = NormalDist()

# A variant's numbers as an A/B decision reads them. ``n``: emails sent;
# ``successes``: recipients who opened, clicked or ordered (rate metrics);
# ``total`` and ``total_sq``: sum and sum of squares of the revenue per
# recipient (revenue metric); ``unsubscribed`` and ``bounced``: guardrails.
Arm = namedtuple("Arm", "key n successes total total_sq unsubscribed bounced", defaults=(0, 0.0, 0.0, 0, 0))

# The outcome of an A/B evaluation. ``winner``: the key of the winning arm or
# None; ``reason``: 'winner', 'sample' (an arm below the minimum sample),
# 'tie', 'not_significant' or 'guardrail'; ``comparisons``: one
# :data:`Comparison` per other arm, against the best one; ``alpha``: the
# significance level each comparison was held to.
Decision = namedtuple("Decision", "winner reason best comparisons alpha")
Comparison = namedtuple("Comparison", "key statistic p_value guardrail")


# ------------------------------------------------------------
# ASSIGNMENT
# ------------------------------------------------------------

def hash_fraction(key):
    """A number in [0, 1) that depends only on ``key`` (a string).

    SHA-256 rather than Python's ``hash()``: the latter is salted per process,
    so two cron workers (or a restart) would disagree.
    """
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def pick_weighted(key, weighted):
    """The item ``key`` falls on, when [0, 1) is cut in slices proportional
    to the weights, in the given order.

    :param str key: e.g. f"{enrollment_id}:{step_id}"
    :param list weighted: [(item, weight)], weights > 0
    """
    total = sum(weight for _item, weight in weighted)
    if not weighted or total <= 0:
        raise ValueError("pick_weighted needs at least one positive weight")
    point = hash_fraction(key) * total
    cumulative = 0.0
    for item, weight in weighted:
        cumulative += weight
        if point < cumulative:
            return item
    return weighted[-1][0]


# ------------------------------------------------------------
# DISTRIBUTIONS
# ------------------------------------------------------------

def normal_sf(z):
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2))


def z_quantile(confidence):
    """The two-sided critical value: 1.96 for 0.95."""
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def _beta_continued_fraction(a, b, x):
    """Continued fraction of the regularized incomplete beta function
    (modified Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        result *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        result *= delta
        if abs(delta - 1.0) < 1e-14:
            break
    return result


def incomplete_beta(a, b, x):
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_two_sided_p(t, df):
    """P(|T| > |t|) for Student's t with ``df`` degrees of freedom."""
    if df <= 0 or math.isnan(t):
        return 1.0
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


# ------------------------------------------------------------
# TESTS
# ------------------------------------------------------------

def two_proportion_ztest(x1, n1, x2, n2):
    """Pooled two-proportion z-test of p1 = p2.

    Why this test: the rate metrics (opened, clicked, ordered) are yes/no
    outcomes of independent recipients, and a variant is only judged once it
    has a minimum sample, where the normal approximation of the binomial is
    sound; it is the test most email tools use, so its numbers can be checked
    by hand or with any online calculator.

    :return tuple: (z, two-sided p-value); z > 0 when the first rate is higher
    """
    if not n1 or not n2:
        return 0.0, 1.0
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0 if p1 == p2 else 0.0
    z = (p1 - p2) / se
    return z, 2 * normal_sf(abs(z))


def welch_ttest(mean1, var1, n1, mean2, var2, n2):
    """Welch's t-test of mean1 = mean2, without assuming equal variances.

    Why this test: revenue per recipient is mostly zeros with a few large
    orders; the two variants' variances differ, which Student's pooled test
    assumes away. With the minimum sample, the means are close to normal
    (central limit theorem) even though single revenues are not.

    :return tuple: (t, degrees of freedom, two-sided p-value)
    """
    if n1 < 2 or n2 < 2:
        return 0.0, 0.0, 1.0
    se1, se2 = var1 / n1, var2 / n2
    se = math.sqrt(se1 + se2)
    if se == 0:
        return 0.0, 0.0, 1.0 if mean1 == mean2 else 0.0
    t = (mean1 - mean2) / se
    df = (se1 + se2) ** 2 / ((se1 ** 2) / (n1 - 1) + (se2 ** 2) / (n2 - 1))
    return t, df, student_t_two_sided_p(t, df)


def mean_and_variance(n, total, total_sq):
    """Mean and sample variance from a count, a sum and a sum of squares."""
    if not n:
        return 0.0, 0.0
    mean = total / n
    if n < 2:
        return mean, 0.0
    return mean, max(0.0, (total_sq - n * mean * mean) / (n - 1))


# ------------------------------------------------------------
# A/B DECISION
# ------------------------------------------------------------

def arm_value(arm, metric):
    """The arm's score on the metric: a rate, or revenue per recipient."""
    if not arm.n:
        return 0.0
    return (arm.total if metric == "revenue" else arm.successes) / arm.n


def _compare(best, other, metric):
    if metric == "revenue":
        mean1, var1 = mean_and_variance(best.n, best.total, best.total_sq)
        mean2, var2 = mean_and_variance(other.n, other.total, other.total_sq)
        statistic, _df, p_value = welch_ttest(mean1, var1, best.n, mean2, var2, other.n)
        return statistic, p_value
    return two_proportion_ztest(best.successes, best.n, other.successes, other.n)


def _worse_on(best, other, attribute, alpha):
    """Whether ``best`` is significantly worse than ``other`` on a rate that
    should be low (unsubscribes, bounces): one-sided z-test at ``alpha``."""
    z, _p = two_proportion_ztest(getattr(best, attribute), best.n, getattr(other, attribute), other.n)
    return z > 0 and normal_sf(z) < alpha


def decide_winner(arms, metric, confidence, min_sample):
    """Decide whether one arm beats all the others.

    The arm with the best score wins when:

    * every arm was sent to at least ``min_sample`` recipients;
    * it is better than every other arm with a two-sided p-value below
      ``(1 - confidence) / (k - 1)``: Bonferroni's correction for the k - 1
      comparisons, so that testing five variants is not five chances of a
      false winner;
    * guardrail: its unsubscribe and bounce rates are not significantly
      worse than any other arm's (one-sided z-test at ``1 - confidence``,
      uncorrected, i.e. the guardrail errs on the side of protecting the list).

    :param list arms: :data:`Arm` tuples, at least two
    :param str metric: 'open', 'click', 'conversion' (rates) or 'revenue'
    :param float confidence: 0.90, 0.95 or 0.99
    :param int min_sample: recipients each arm needs before any decision
    :return: a :data:`Decision`
    """
    alpha = 1.0 - confidence
    if len(arms) < 2:
        return Decision(None, "sample", None, [], alpha)
    alpha_each = alpha / (len(arms) - 1)
    if any(arm.n < max(min_sample, 2) for arm in arms):
        return Decision(None, "sample", None, [], alpha_each)
    ranked = sorted(arms, key=lambda arm: arm_value(arm, metric), reverse=True)
    best = ranked[0]
    if arm_value(best, metric) == arm_value(ranked[1], metric):
        return Decision(None, "tie", best.key, [], alpha_each)
    comparisons = []
    for other in ranked[1:]:
        statistic, p_value = _compare(best, other, metric)
        guardrail = (_worse_on(best, other, "unsubscribed", alpha)
                     or _worse_on(best, other, "bounced", alpha))
        comparisons.append(Comparison(other.key, statistic, p_value, guardrail))
    if any(c.guardrail for c in comparisons):
        return Decision(None, "guardrail", best.key, comparisons, alpha_each)
    if all(c.p_value < alpha_each for c in comparisons):
        return Decision(best.key, "winner", best.key, comparisons, alpha_each)
    return Decision(None, "not_significant", best.key, comparisons, alpha_each)


# ------------------------------------------------------------
# HOLDOUT LIFT
# ------------------------------------------------------------

def wilson_interval(x, n, confidence=0.95):
    """Wilson score interval of a proportion x / n."""
    if not n:
        return 0.0, 1.0
    z = z_quantile(confidence)
    p = x / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_interval(x1, n1, x2, n2, confidence=0.95):
    """Difference of two proportions p1 - p2 with Newcombe's hybrid score
    interval (Newcombe 1998, method 10), built from the two Wilson intervals.

    Chosen over the textbook Wald interval because conversion rates are small
    and holdout groups are often small too: there Wald's interval is too
    narrow (and can leave [-1, 1]), Newcombe's keeps its coverage.

    :return tuple: (difference, low, high)
    """
    if not n1 or not n2:
        return 0.0, -1.0, 1.0
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson_interval(x1, n1, confidence)
    l2, u2 = wilson_interval(x2, n2, confidence)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return diff, low, high


def risk_ratio_interval(x1, n1, x2, n2, confidence=0.95):
    """Ratio of two proportions p1 / p2 with the Katz log interval.

    Relative lift is this ratio minus one. Undefined (None) when either group
    has no success: a ratio to zero says nothing.

    :return tuple: (ratio, low, high) or (None, None, None)
    """
    if not (x1 and x2 and n1 and n2):
        return None, None, None
    ratio = (x1 / n1) / (x2 / n2)
    se = math.sqrt(1 / x1 - 1 / n1 + 1 / x2 - 1 / n2)
    z = z_quantile(confidence)
    return ratio, ratio * math.exp(-z * se), ratio * math.exp(z * se)


def mean_difference_interval(n1, total1, total_sq1, n2, total2, total_sq2, confidence=0.95):
    """Difference of two means (revenue per entrant) with Welch's interval:
    (m1 - m2) +/- t * sqrt(v1 / n1 + v2 / n2), t from Student's distribution
    with Welch-Satterthwaite degrees of freedom.

    :return tuple: (difference, low, high)
    """
    mean1, var1 = mean_and_variance(n1, total1, total_sq1)
    mean2, var2 = mean_and_variance(n2, total2, total_sq2)
    diff = mean1 - mean2
    if n1 < 2 or n2 < 2:
        return diff, None, None
    se1, se2 = var1 / n1, var2 / n2
    se = math.sqrt(se1 + se2)
    if se == 0:
        return diff, diff, diff
    df = (se1 + se2) ** 2 / ((se1 ** 2) / (n1 - 1) + (se2 ** 2) / (n2 - 1))
    critical = _t_quantile(confidence, df)
    return diff, diff - critical * se, diff + critical * se


def _t_quantile(confidence, df):
    """Two-sided critical value of Student's t, by bisection on the p-value."""
    target = 1.0 - confidence
    low, high = 0.0, 1000.0
    for _step in range(200):
        middle = (low + high) / 2
        if student_t_two_sided_p(middle, df) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2
