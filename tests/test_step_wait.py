from datetime import timedelta

from freezegun import freeze_time

from .common import NOW
from .steps_common import StepsCommon, email_step


class TestStepWait(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.vip = cls.env["res.partner.category"].create({"name": "VIP"})
        cls.sequence = cls.make_sequence("Wait for VIP", [
            {"step_type": "wait", "delay_value": 0, "wait_mode": "condition", "wait_target": "partner",
             "wait_domain": f"[('category_id', 'in', [{cls.vip.id}])]",
             "wait_timeout_value": 2, "wait_timeout_unit": "days"},
            email_step("Welcome to the VIP club"),
        ])

    def test_waits_until_the_condition_holds(self):
        vera = self.new_contact("Vera Waiting")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(vera, count=0)
        enrollment = self.enrollments(self.sequence, vera)
        wait_step, email = self.steps(self.sequence)
        # postponed, no trace, re-checked later
        self.assertRecordValues(enrollment, [{"state": "running", "step_id": wait_step.id,
                                              "next_due": NOW + timedelta(minutes=16)}])
        self.assertIn("Waiting until a condition holds", enrollment.wait_reason)
        self.assertFalse(enrollment.trace_ids)
        vera.category_id = self.vip
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=20))
            self.run_crons(NOW + timedelta(minutes=21))
        self.assertEqual(self.assertQueued(vera).subject, "Welcome to the VIP club")
        self.assertEqual(enrollment.trace_ids.sorted("id").mapped("state"), ["sent", "sent"])
        self.assertEqual(enrollment.state, "done")
        # one wait logged for the timeline, however often it was checked
        self.assertEqual(len(enrollment.event_ids.filtered(lambda e: e.kind == "wait")), 1)
        self.assertIn("Waited", enrollment.timeline_html)

    def test_timeout_goes_on(self):
        tim = self.new_contact("Tim Timeout")
        for minutes in (1, 20, 60 * 24):
            self.run_crons(NOW + timedelta(minutes=minutes))
        enrollment = self.enrollments(self.sequence, tim)
        self.assertEqual(enrollment.step_id, self.steps(self.sequence)[0])
        self.assertEqual(enrollment.next_due, NOW + timedelta(minutes=60 * 24 + 15))
        with freeze_time(NOW + timedelta(days=1, hours=23, minutes=50)):
            enrollment.next_due = NOW + timedelta(days=1, hours=23, minutes=50)
        self.run_crons(NOW + timedelta(days=1, hours=23, minutes=50))
        # the next check is capped by the deadline
        self.assertEqual(enrollment.next_due, NOW + timedelta(days=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2))
        self.assertRecordValues(enrollment.trace_ids, [{"state": "skipped", "state_msg": "Wait timed out."}])
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, minutes=1))
        self.assertQueued(tim)

    def test_waits_for_an_event(self):
        """Wait until the customer orders, at most 3 days; then thank them."""
        sequence = self.make_sequence("Wait for an order", [
            {"step_type": "wait", "delay_value": 0, "wait_mode": "event", "wait_trigger_type": "order_confirmed",
             "wait_timeout_value": 3},
            email_step("Thanks for your first order"),
        ])
        olive = self.new_contact("Olive Orders")
        self.run_crons(NOW + timedelta(minutes=1))
        enrollment = self.enrollments(sequence, olive)
        self.assertEqual(enrollment.state, "running")
        self.assertFalse(enrollment.trace_ids)
        order = self.env["sale.order"].create({
            "partner_id": olive.id,
            "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW + timedelta(hours=5))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=5, minutes=10))
            self.run_crons(NOW + timedelta(hours=5, minutes=11))
        self.assertEqual(self.assertQueued(olive, sequence=sequence).subject, "Thanks for your first order")
