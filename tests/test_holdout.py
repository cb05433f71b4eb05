"""Holdout groups: a share of the entrants is followed but sent nothing, and
the sequence's lift is measured against them."""
from datetime import timedelta

from freezegun import freeze_time

from odoo.exceptions import ValidationError

from odoo.addons.behavioral_email.tools import stats

from .common import NOW, BehavioralCommon


class TestHoldout(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sequence = cls.env["behavioral.sequence"].create({
            "name": "Welcome with holdout", "trigger_type": "partner_created",
            "holdout_percent": 20, "measure_window_days": 30,
            "step_ids": [
                (0, 0, {"subject": "Welcome", "body_html": "<p>Welcome</p>", "delay_value": 0}),
                (0, 0, {"subject": "Our favourites", "body_html": "<p>Favourites</p>", "delay_value": 2}),
            ],
        })
        cls.first_step, cls.second_step = cls.sequence.step_ids.sorted()
        cls.start(cls, cls.sequence)
        with freeze_time(NOW):
            cls.customers = cls.env["res.partner"].create([
                {"name": f"Entrant {i}", "email": f"entrant{i}@example.com"} for i in range(100)])

    def order(self, partner, at, qty=1):
        order = self.env["sale.order"].create({
            "partner_id": partner.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": qty})],
        })
        self.confirm(order, at)
        return order

    def test_holdout_is_followed_but_never_emailed(self):
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        enrollments = self.enrollments(self.sequence)
        self.assertEqual(len(enrollments), 100)
        held = enrollments.filtered("is_holdout")
        # 20 expected, standard deviation 4
        self.assertTrue(6 <= len(held) <= 38, len(held))
        for enrollment in held:
            self.assertQueued(enrollment.partner_id, count=0)
            self.assertRecordValues(enrollment.trace_ids, [{
                "step_id": self.first_step.id, "state": "skipped", "state_msg": "holdout",
                "mailing_trace_id": False}])
        for enrollment in enrollments - held:
            self.assertQueued(enrollment.partner_id, count=1)
        # the control group moves on exactly like the others
        self.assertEqual(set(enrollments.mapped("step_id")), {self.second_step})
        self.assertEqual(set(enrollments.mapped("next_due")), {NOW + timedelta(days=2, minutes=1)})
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, minutes=2))
        self.assertEqual(set(enrollments.mapped("state")), {"done"})
        self.assertEqual(len(self._new_mails), 100 - len(held))
        self.assertEqual(set(held.trace_ids.mapped("state")), {"skipped"})
        self.assertEqual(self.sequence.kpi_sent, 2 * (100 - len(held)))

    def test_lift_against_the_holdout(self):
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        enrollments = self.enrollments(self.sequence)
        held = enrollments.filtered("is_holdout").partner_id
        emailed = (enrollments - enrollments.filtered("is_holdout")).partner_id
        # a holdout entrant is sent nothing, but their order counts for the control group
        self.order(held[0], NOW + timedelta(days=3))
        self.order(held[1], NOW + timedelta(days=4), qty=2)
        for index, partner in enumerate(emailed[:10]):
            self.order(partner, NOW + timedelta(days=1, hours=index))
        self.order(emailed[0], NOW + timedelta(days=6))
        # outside the measurement window: before entering, after 30 days
        self.order(emailed[11], NOW - timedelta(hours=1))
        self.order(held[2], NOW + timedelta(days=31))
        self.env.invalidate_all()

        n_t, n_c = len(emailed), len(held)
        revenue_t = 11 * 80.0
        revenue_c = 80.0 + 160.0
        self.assertRecordValues(self.sequence, [{
            "holdout_treatment_count": n_t,
            "holdout_control_count": n_c,
            "holdout_treatment_converted": 10,
            "holdout_control_converted": 2,
            "holdout_treatment_conversion": 10 / n_t,
            "holdout_control_conversion": 2 / n_c,
            "holdout_treatment_rpe": revenue_t / n_t,
            "holdout_control_rpe": revenue_c / n_c,
        }])
        lift, low, high = stats.newcombe_interval(10, n_t, 2, n_c)
        ratio, ratio_low, ratio_high = stats.risk_ratio_interval(10, n_t, 2, n_c)
        sq_t = 10 * 80.0 ** 2 + (160.0 ** 2 - 80.0 ** 2)  # emailed[0] ordered twice: 160
        sq_c = 80.0 ** 2 + 160.0 ** 2
        rpe, rpe_low, rpe_high = stats.mean_difference_interval(n_t, revenue_t, sq_t, n_c, revenue_c, sq_c)
        sequence = self.sequence
        self.assertAlmostEqual(sequence.holdout_lift, lift)
        self.assertAlmostEqual(sequence.holdout_lift_low, low)
        self.assertAlmostEqual(sequence.holdout_lift_high, high)
        self.assertLess(sequence.holdout_lift_low, sequence.holdout_lift)
        self.assertLess(sequence.holdout_lift, sequence.holdout_lift_high)
        self.assertTrue(sequence.holdout_has_relative_lift)
        self.assertAlmostEqual(sequence.holdout_relative_lift, ratio - 1)
        self.assertAlmostEqual(sequence.holdout_relative_lift_low, ratio_low - 1)
        self.assertAlmostEqual(sequence.holdout_relative_lift_high, ratio_high - 1)
        self.assertAlmostEqual(sequence.holdout_incremental_revenue, rpe * n_t, places=2)
        self.assertAlmostEqual(sequence.holdout_incremental_revenue_low, rpe_low * n_t, places=2)
        self.assertAlmostEqual(sequence.holdout_incremental_revenue_high, rpe_high * n_t, places=2)
        self.assertEqual(sequence.holdout_significant, low > 0 or high < 0)

        # the entrant report says the same, per group
        Entrant = self.env["behavioral.report.entrant"]
        groups = {
            is_holdout: (count, converted, revenue)
            for is_holdout, count, converted, revenue in Entrant._read_group(
                [("sequence_id", "=", sequence.id)], ["is_holdout"], ["__count", "converted:sum", "revenue:sum"])
        }
        self.assertEqual(groups[True], (n_c, 2, revenue_c))
        self.assertEqual(groups[False], (n_t, 10, revenue_t))

    def test_assignment_is_stable_per_customer(self):
        picks = [self.sequence._is_holdout(partner_id) for partner_id in range(1, 2001)]
        # 400 expected, standard deviation 18
        self.assertAlmostEqual(sum(picks), 400, delta=80)
        self.assertEqual(picks, [self.sequence._is_holdout(partner_id) for partner_id in range(1, 2001)])
        other = self.sequence.copy({"holdout_percent": 20})
        self.assertNotEqual(picks, [other._is_holdout(partner_id) for partner_id in range(1, 2001)],
                            "each sequence draws its own control group")
        other.holdout_percent = 0
        self.assertFalse(any(other._is_holdout(partner_id) for partner_id in range(1, 201)))

    def test_holdout_percent_limits(self):
        with self.assertRaises(ValidationError):
            self.sequence.holdout_percent = 60
        with self.assertRaises(ValidationError):
            self.sequence.holdout_percent = -1
