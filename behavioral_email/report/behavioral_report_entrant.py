from collections import defaultdict

from odoo import fields, models, tools
from odoo.tools import SQL

from ..tools import stats
from ..tools.revenue import confirmed_orders_join

CUSTOMER_GROUPS = [
    ("engaged", "Engaged (opened or clicked)"),
    ("not_engaged", "Emailed, not engaged"),
    ("not_reached", "Not emailed"),
    ("holdout", "Holdout (control group)"),
]


class BehavioralReportEntrant(models.Model):
    """What customers did after entering a sequence: one row per enrollment.

    The results of an entrant are the orders their customer confirmed within
    the sequence's measurement window (``measure_window_days``) after
    entering (``entered_at``), whatever email they came from, net of credit
    notes. Counting every order of every entrant, emailed or not (intention to
    treat), is what makes the holdout comparison fair: the control group is
    drawn at random at entry and measured exactly like the others.

    ``customer_group``: ``holdout`` (control group, sent nothing), else
    ``engaged`` (opened or clicked one of the sequence's emails),
    ``not_engaged`` (emailed, neither opened nor clicked) or ``not_reached``
    (no email sent: consent missing, exited before the first email...).

    Measures: ``converted`` and ``repeat_buyer`` are 0 or 1 (sums are counts);
    ``conversion_rate`` and ``repeat_rate`` are 0 or 100 (averages are
    percentages); ``order_count`` and ``revenue`` are sums.
    """

    _name = "behavioral.report.entrant"
    _description = "Behavioral Email Entrant Results"
    _auto = False
    _order = "entered_at desc, id desc"
    _rec_name = "enrollment_id"

    enrollment_id = fields.Many2one("behavioral.enrollment", readonly=True)
    sequence_id = fields.Many2one("behavioral.sequence", readonly=True)
    partner_id = fields.Many2one("res.partner", string="Customer", readonly=True)
    company_id = fields.Many2one("res.company", readonly=True)
    currency_id = fields.Many2one(related="company_id.currency_id")
    is_holdout = fields.Boolean("Holdout", readonly=True)
    customer_group = fields.Selection(CUSTOMER_GROUPS, string="Group", readonly=True)
    entered_at = fields.Datetime("Entered On", readonly=True)
    converted = fields.Integer("Buyers", readonly=True)
    conversion_rate = fields.Float("Conversion (%)", readonly=True, aggregator="avg")
    order_count = fields.Integer("Orders", readonly=True)
    repeat_buyer = fields.Integer("Repeat Buyers", readonly=True)
    repeat_rate = fields.Float("Repeat Purchase (%)", readonly=True, aggregator="avg")
    revenue = fields.Monetary("Net Revenue", readonly=True, currency_field="currency_id")

    def init(self):
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(SQL(
            """CREATE VIEW %(table)s AS (
                SELECT e.id AS id,
                       e.id AS enrollment_id,
                       e.sequence_id,
                       e.partner_id,
                       e.company_id,
                       e.is_holdout,
                       CASE WHEN e.is_holdout THEN 'holdout'
                            WHEN engagement.engaged THEN 'engaged'
                            WHEN engagement.emailed THEN 'not_engaged'
                            ELSE 'not_reached' END AS customer_group,
                       e.entered_at,
                       (COALESCE(orders.order_count, 0) > 0)::int AS converted,
                       CASE WHEN COALESCE(orders.order_count, 0) > 0 THEN 100.0 ELSE 0.0 END AS conversion_rate,
                       COALESCE(orders.order_count, 0) AS order_count,
                       (COALESCE(orders.order_count, 0) > 1)::int AS repeat_buyer,
                       CASE WHEN COALESCE(orders.order_count, 0) > 1 THEN 100.0 ELSE 0.0 END AS repeat_rate,
                       COALESCE(orders.revenue, 0) AS revenue
                  FROM behavioral_enrollment e
                  JOIN behavioral_sequence s ON s.id = e.sequence_id
                  LEFT JOIN LATERAL (
                      SELECT bool_or(bt.mailing_trace_id IS NOT NULL) AS emailed,
                             bool_or(mt.open_datetime IS NOT NULL OR mt.links_click_datetime IS NOT NULL
                                     OR mt.trace_status IN ('open', 'reply')) AS engaged
                        FROM behavioral_trace bt
                        LEFT JOIN mailing_trace mt ON mt.id = bt.mailing_trace_id
                       WHERE bt.enrollment_id = e.id
                  ) engagement ON TRUE
                  %(orders)s
                 WHERE e.entered_at IS NOT NULL
            )""", table=SQL.identifier(self._table), orders=confirmed_orders_join("orders", SQL(
                """so.partner_id = e.partner_id
                   AND so.date_order > e.entered_at
                   AND so.date_order <= e.entered_at + s.measure_window_days * interval '1 day'"""))))

    # ------------------------------------------------------------
    # RESULTS OF SEQUENCES
    # ------------------------------------------------------------

    def _get_group_totals(self, sequences):
        """{sequence id: {customer group: {'n', 'converted', 'orders',
        'repeat', 'revenue', 'revenue_sq'}}}, in one query."""
        totals = defaultdict(lambda: defaultdict(lambda: dict.fromkeys(
            ("n", "converted", "orders", "repeat", "revenue", "revenue_sq"), 0)))
        if not sequences.ids:
            return totals
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT sequence_id, customer_group, count(*), sum(converted), sum(order_count),
                      sum(repeat_buyer), sum(revenue), sum(revenue * revenue)
                 FROM %s WHERE sequence_id IN %s
                GROUP BY sequence_id, customer_group""",
            SQL.identifier(self._table), tuple(sequences.ids)))
        for sequence_id, group, n, converted, orders, repeat, revenue, revenue_sq in self.env.cr.fetchall():
            totals[sequence_id][group] = {
                "n": n, "converted": converted or 0, "orders": orders or 0, "repeat": repeat or 0,
                "revenue": float(revenue or 0), "revenue_sq": float(revenue_sq or 0),
            }
        return totals

    def _get_holdout_results(self, sequences, confidence=0.95):
        """The holdout comparison of each sequence.

        * conversion: share of entrants who ordered within the window, per
          group (treatment = every entrant not held out, emailed or not);
        * lift: treatment minus control conversion, with Newcombe's hybrid
          score interval (:func:`stats.newcombe_interval`); relative lift:
          the ratio of the two conversions minus one, with the Katz log
          interval (:func:`stats.risk_ratio_interval`);
        * revenue per entrant, per group, and incremental revenue: the
          difference of revenue per entrant times the treatment's entrants,
          with Welch's interval on the difference
          (:func:`stats.mean_difference_interval`), net of credit notes.

        :return dict: {sequence id: {field name: value}}
        """
        totals = self._get_group_totals(sequences)
        results = {}
        for sequence in sequences:
            groups = totals[sequence.id]
            control = groups["holdout"]
            treatment = dict.fromkeys(control, 0)
            for name in ("engaged", "not_engaged", "not_reached"):
                for key, value in groups[name].items():
                    treatment[key] += value
            n_t, n_c = treatment["n"], control["n"]
            diff, low, high = stats.newcombe_interval(
                treatment["converted"], n_t, control["converted"], n_c, confidence)
            ratio, ratio_low, ratio_high = stats.risk_ratio_interval(
                treatment["converted"], n_t, control["converted"], n_c, confidence)
            rpe_diff, rpe_low, rpe_high = stats.mean_difference_interval(
                n_t, treatment["revenue"], treatment["revenue_sq"],
                n_c, control["revenue"], control["revenue_sq"], confidence)
            has_both = bool(n_t and n_c)
            results[sequence.id] = {
                "holdout_treatment_count": n_t,
                "holdout_control_count": n_c,
                "holdout_treatment_converted": treatment["converted"],
                "holdout_control_converted": control["converted"],
                "holdout_treatment_conversion": treatment["converted"] / n_t if n_t else 0.0,
                "holdout_control_conversion": control["converted"] / n_c if n_c else 0.0,
                "holdout_treatment_rpe": treatment["revenue"] / n_t if n_t else 0.0,
                "holdout_control_rpe": control["revenue"] / n_c if n_c else 0.0,
                "holdout_lift": diff if has_both else 0.0,
                "holdout_lift_low": low if has_both else 0.0,
                "holdout_lift_high": high if has_both else 0.0,
                "holdout_relative_lift": ratio - 1 if ratio is not None else 0.0,
                "holdout_relative_lift_low": ratio_low - 1 if ratio is not None else 0.0,
                "holdout_relative_lift_high": ratio_high - 1 if ratio is not None else 0.0,
                "holdout_has_relative_lift": ratio is not None,
                "holdout_incremental_revenue": rpe_diff * n_t if has_both else 0.0,
                "holdout_incremental_revenue_low": rpe_low * n_t if has_both and rpe_low is not None else 0.0,
                "holdout_incremental_revenue_high": rpe_high * n_t if has_both and rpe_high is not None else 0.0,
                "holdout_significant": has_both and (low > 0 or high < 0),
            }
        return results

    def _get_customer_results(self, sequences):
        """Repeat-purchase rate and average order value within the window of
        the engaged entrants, the emailed but not engaged ones and the
        holdout group.

        :return dict: {sequence id: {field name: value}}
        """
        totals = self._get_group_totals(sequences)
        results = {}
        for sequence in sequences:
            values = {}
            for group, prefix in (("engaged", "engaged"), ("not_engaged", "unengaged"), ("holdout", "control")):
                data = totals[sequence.id][group]
                values[f"{prefix}_entrant_count"] = data["n"]
                values[f"{prefix}_repeat_rate"] = data["repeat"] / data["n"] if data["n"] else 0.0
                values[f"{prefix}_order_value"] = data["revenue"] / data["orders"] if data["orders"] else 0.0
            results[sequence.id] = values
        return results
