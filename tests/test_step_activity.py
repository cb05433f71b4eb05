from datetime import date, timedelta

from odoo.addons.mail.tests.common import mail_new_test_user

from .common import NOW
from .steps_common import StepsCommon


class TestStepActivity(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.seller = mail_new_test_user(
            cls.env, login="seller", name="Sam Seller", email="sam@example.com",
            groups="sales_team.group_sale_salesman")
        cls.account_manager = mail_new_test_user(
            cls.env, login="accounts", name="Ada Accounts", email="ada@example.com",
            groups="sales_team.group_sale_salesman")
        cls.call_type = cls.env.ref("mail.mail_activity_data_call")

    def test_activity_on_the_order_for_its_salesperson(self):
        sequence = self.make_sequence("Call big buyers", [{
            "step_type": "activity", "delay_value": 0, "activity_type_id": self.call_type.id,
            "activity_summary": "Call {{ object.partner_id.name }} about {{ object.order_id.name }}",
            "activity_due_days": 2,
        }], trigger_type="order_confirmed")
        order = self.env["sale.order"].create({
            "partner_id": self.bob.id, "user_id": self.seller.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW)
        self.run_crons(NOW + timedelta(minutes=1))
        activity = self.env["mail.activity"].search([("res_model", "=", "sale.order"), ("res_id", "=", order.id),
                                                     ("activity_type_id", "=", self.call_type.id)])
        self.assertRecordValues(activity, [{
            "user_id": self.seller.id, "summary": f"Call Bob Customer about {order.name}",
            "date_deadline": date(2026, 3, 4),
        }])
        trace = self.enrollments(sequence, self.bob).trace_ids
        self.assertRecordValues(trace, [{"state": "sent", "activity_id": activity.id}])

    def test_activity_on_the_customer_for_their_salesperson_or_fallback(self):
        sequence = self.make_sequence("Welcome call", [{
            "step_type": "activity", "delay_value": 0, "activity_summary": "Welcome {{ object.partner_id.name }}",
            "activity_user_id": self.account_manager.id,
        }])
        kept = self.new_contact("Kim Kept", user_id=self.seller.id)
        orphan = self.new_contact("Otto Orphan")
        self.run_crons(NOW + timedelta(minutes=1))
        activities = self.env["mail.activity"].search([
            ("res_model", "=", "res.partner"), ("res_id", "in", (kept | orphan).ids)], order="res_id")
        self.assertRecordValues(activities, [
            {"res_id": kept.id, "user_id": self.seller.id, "summary": "Welcome Kim Kept"},
            {"res_id": orphan.id, "user_id": self.account_manager.id, "summary": "Welcome Otto Orphan"},
        ])
        self.assertEqual(set(self.enrollments(sequence).mapped("state")), {"done"})

    def test_nobody_to_assign_fails_visibly(self):
        sequence = self.make_sequence("Orphan call", [{
            "step_type": "activity", "delay_value": 0, "activity_summary": "Call",
        }])
        nora = self.new_contact("Nora Nobody")
        self.run_crons(NOW + timedelta(minutes=1))
        enrollment = self.enrollments(sequence, nora)
        self.assertRecordValues(enrollment, [{"state": "failed", "failure_type": "activity_no_user"}])
