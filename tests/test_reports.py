"""Key numbers, funnel, customer comparison and lifetime values, read the way
the back office reads them."""
from datetime import timedelta

from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user

from .common import NOW, BehavioralCommon

BODY = '<p>Hi <t t-out="object.partner_id.name"/>, <a href="https://shop.example.com/shop">visit the shop</a></p>'
REPORTS = {
    "behavioral.report": "behavioral_email.behavioral_report_action",
    "behavioral.report.funnel": "behavioral_email.behavioral_report_funnel_action",
    "behavioral.report.entrant": "behavioral_email.behavioral_report_entrant_action",
    "behavioral.report.order": "behavioral_email.behavioral_report_order_action",
}


class TestReports(BehavioralCommon):
    """40 customers enter a sequence with a 30 % holdout and an A/B step; the
    emailed ones open, click, order, bounce and unsubscribe."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = cls.env
        cls.user = mail_new_test_user(
            env, login="rita", name="Rita Reports", email="rita@example.com",
            groups="behavioral_email.group_behavioral_user")
        cls.topic = env["mailing.list"].create({"name": "Garden news"})
        cls.sequence = env["behavioral.sequence"].create({
            "name": "Welcome measured", "trigger_type": "partner_created", "holdout_percent": 30,
            "step_ids": [(0, 0, {"subject": "Welcome", "body_html": BODY, "delay_value": 0})],
        })
        cls.step = cls.sequence.step_ids
        cls.variants = env["behavioral.step.variant"].create([
            {"step_id": cls.step.id, "subject": "Welcome A"}, {"step_id": cls.step.id, "subject": "Welcome B"}])
        cls.start(cls, cls.sequence)
        with freeze_time(NOW):
            env["res.partner"].create([
                {"name": f"Reader {i}", "email": f"reader{i}@example.com"} for i in range(40)])
        cls.run_crons(cls, NOW + timedelta(minutes=1))
        # the mails are handed to a mocked server, which marks them delivered
        with cls("test_key_numbers").mock_mail_gateway():
            env["mail.mail"].search([("model", "=", "behavioral.enrollment"), ("res_id", "in", cls.enrollments(
                cls, cls.sequence).ids)]).send()
        enrollments = cls.enrollments(cls, cls.sequence)
        cls.held = enrollments.filtered("is_holdout").partner_id.sorted("id")
        cls.emailed = (enrollments.partner_id - cls.held).sorted("id")
        assert len(cls.held) >= 2 and len(cls.emailed) >= 10, (len(cls.held), len(cls.emailed))
        traces = {trace.partner_id: trace for trace in enrollments.trace_ids}
        e = cls.emailed
        with freeze_time(NOW + timedelta(hours=1)):
            for partner in e[:6]:
                traces[partner].mailing_trace_id.set_opened()
            for partner in e[:3]:
                traces[partner].mailing_trace_id.set_clicked()
            traces[e[7]].mailing_trace_id.set_bounced()
        # Reader 8 leaves the newsletter list an hour after the email
        env["mailing.contact"].create({
            "name": e[8].name, "email": e[8].email, "subscription_ids": [(0, 0, {"list_id": cls.topic.id})]})
        with cls("test_key_numbers").mock_datetime_and_now(NOW + timedelta(hours=1)):
            cls.topic._update_subscription_from_email(e[8].email, opt_out=True)
            env.flush_all()
        cls.order(e[0], NOW + timedelta(days=1), qty=2)
        cls.order(e[0], NOW + timedelta(days=3))
        cls.order(e[1], NOW + timedelta(days=1))
        cls.order(e[6], NOW + timedelta(days=2))
        cls.order(cls.held[0], NOW + timedelta(days=1))
        cls.order(cls.held[0], NOW + timedelta(days=5))
        cls.order(cls.held[1], NOW + timedelta(days=2), qty=3)

    @classmethod
    def order(cls, partner, at, qty=1):
        order = cls.env["sale.order"].create({
            "partner_id": partner.id,
            "order_line": [(0, 0, {"product_id": cls.tree.id, "product_uom_qty": qty})],
        })
        with freeze_time(at):
            order.action_confirm()
        return order

    # ------------------------------------------------------------

    def test_key_numbers(self):
        n_t = len(self.emailed)
        expected = {
            "kpi_entered": 40, "kpi_sent": n_t, "kpi_delivered": n_t - 1, "kpi_opened": 6, "kpi_clicked": 3,
            "kpi_converted": 2, "kpi_revenue": 320.0, "kpi_unsubscribed": 1, "kpi_bounced": 1,
        }
        self.assertRecordValues(self.sequence, [dict(expected, kpi_open_rate=6 / n_t, kpi_click_rate=3 / n_t,
                                                     kpi_conversion_rate=2 / n_t, kpi_bounce_rate=1 / n_t,
                                                     kpi_revenue_per_recipient=round(320.0 / n_t, 2))])
        self.assertRecordValues(self.step, [{key: value for key, value in expected.items() if key != "kpi_entered"}])
        for fname in ("kpi_sent", "kpi_opened", "kpi_clicked", "kpi_converted", "kpi_revenue"):
            self.assertEqual(sum(self.variants.mapped(fname)), self.sequence[fname], fname)
        # a click counts as an open, and delivery counts opens the server never confirmed
        self.assertEqual(self.sequence.kpi_delivered_rate, (n_t - 1) / n_t)

    def test_funnel(self):
        n_t = len(self.emailed)
        rows = self.env["behavioral.report.funnel"].search_read(
            [("sequence_id", "=", self.sequence.id)], ["stage", "value"], order="stage")
        self.assertEqual([(row["stage"], row["value"]) for row in rows], [
            ("1_entered", n_t), ("2_sent", n_t), ("3_delivered", n_t - 1), ("4_opened", 6), ("5_clicked", 3),
            ("6_converted", 2)])
        groups = self.env["behavioral.report.funnel"]._read_group(
            [("sequence_id", "=", self.sequence.id)], ["stage"], ["value:sum"])
        self.assertEqual([stage for stage, _value in groups], [key for key, _label in
                                                               self.env["behavioral.report.funnel"]._fields["stage"].selection])

    def test_customers_over_time(self):
        sequence = self.sequence
        # engaged: Reader 0 (160 + 80) and Reader 1 (80) among the 6 who opened
        self.assertEqual(sequence.engaged_entrant_count, 6)
        self.assertAlmostEqual(sequence.engaged_repeat_rate, 1 / 6)
        self.assertAlmostEqual(sequence.engaged_order_value, 320.0 / 3, places=2)
        # emailed, not engaged: Reader 6 ordered once
        self.assertEqual(sequence.unengaged_entrant_count, len(self.emailed) - 6)
        self.assertEqual(sequence.unengaged_repeat_rate, 0.0)
        self.assertAlmostEqual(sequence.unengaged_order_value, 80.0)
        # holdout: two orders of 80 and one of 240
        self.assertEqual(sequence.control_entrant_count, len(self.held))
        self.assertAlmostEqual(sequence.control_repeat_rate, 1 / len(self.held))
        self.assertAlmostEqual(sequence.control_order_value, 400.0 / 3, places=2)
        rows = self.env["behavioral.report.entrant"].read_group(
            [("sequence_id", "=", sequence.id)], ["repeat_rate:avg", "order_count:sum"], ["customer_group"])
        by_group = {row["customer_group"]: row for row in rows}
        self.assertAlmostEqual(by_group["holdout"]["repeat_rate"], 100.0 / len(self.held))
        self.assertEqual(by_group["engaged"]["order_count"], 3)

    def test_lifetime_values(self):
        e = self.emailed
        with freeze_time(NOW + timedelta(days=10)):
            self.env["res.partner"]._cron_behavioral_clv()
        self.assertRecordValues(e[0] | self.held[1] | e[9], [
            # 2 orders 2 days apart: the span counts as a month at least, so 12 orders a
            # year of 120 each, over 2 years
            {"behavioral_clv_historic": 240.0, "behavioral_clv_expected": 120.0 * 12 * 2},
            # one order: expected once more
            {"behavioral_clv_historic": 240.0, "behavioral_clv_expected": 240.0},
            {"behavioral_clv_historic": 0.0, "behavioral_clv_expected": 0.0},
        ])
        # two orders 100 days apart: 365.25 / 100 orders a year
        self.order(e[6], NOW + timedelta(days=102))
        with freeze_time(NOW + timedelta(days=103)):
            self.env["res.partner"]._cron_behavioral_clv()
        self.assertEqual(e[6].behavioral_clv_historic, 160.0)
        self.assertAlmostEqual(e[6].behavioral_clv_expected, 80.0 * 365.25 / 100 * 2, places=1)
        self.assertEqual(
            self.env["ir.config_parameter"].sudo().get_param("behavioral_email.clv_refreshed_at"),
            "2026-06-13 09:00:00")

        # usable as a customer filter: only the valuable customers enroll
        vip = self.env["behavioral.sequence"].create({
            "name": "VIP thanks", "trigger_type": "order_confirmed",
            "partner_domain": "[('behavioral_clv_historic', '>=', 200)]",
            "step_ids": [(0, 0, {"subject": "Thank you", "body_html": "<p>Thanks</p>", "delay_value": 0})],
        })
        self.start(vip, NOW + timedelta(days=110))
        self.order(e[0], NOW + timedelta(days=110))
        self.order(e[1], NOW + timedelta(days=110))
        self.run_crons(NOW + timedelta(days=110, minutes=1), advance=False)
        self.assertEqual(self.enrollments(vip).partner_id, e[0])

    def test_report_views_open_and_group(self):
        """Every report opens for a User, and every measure groups."""
        uenv = self.env(user=self.user)
        for model, xmlid in REPORTS.items():
            action = self.env["ir.actions.act_window"]._for_xml_id(xmlid)
            view_types = action["view_mode"].split(",") + ["search"]
            views = uenv[model].get_views([(False, view_type) for view_type in view_types])
            self.assertEqual(set(views["views"]), set(view_types))
            Model = uenv[model]
            measures = [fname for fname, field in Model._fields.items()
                        if field.type in ("integer", "float", "monetary") and fname != "id" and field.store]
            groupbys = [fname for fname, field in Model._fields.items()
                        if field.store and field.type in ("many2one", "selection", "boolean")]
            self.assertTrue(measures and groupbys, model)
            for groupby in groupbys + ["__count"]:
                rows = Model.read_group([], measures, [] if groupby == "__count" else [groupby], lazy=False)
                self.assertTrue(rows or groupby == "__count", f"{model} grouped by {groupby}")
            dated = [fname for fname, field in Model._fields.items() if field.type == "datetime" and field.store]
            for fname in dated:
                Model.read_group([], measures, [f"{fname}:month"], lazy=False)
            rows = Model.web_search_read([("sequence_id", "=", self.sequence.id)], {
                fname: {} for fname in measures}, limit=10)
            self.assertTrue(rows["records"] or model == "behavioral.report.order", model)
        # the sequence's buttons open them, limited to the sequence
        sequence = self.sequence.with_user(self.user)
        for method in ("action_view_funnel", "action_view_analysis", "action_view_entrants",
                       "action_view_attributed_orders"):
            action = getattr(sequence, method)()
            self.assertEqual(action["domain"], [("sequence_id", "=", self.sequence.id)])
        # the sequence's cards and form read as a User
        values = uenv["behavioral.sequence"].web_search_read([("id", "=", self.sequence.id)], {
            "kpi_open_rate": {}, "kpi_click_rate": {}, "kpi_converted": {}, "kpi_revenue": {},
            "holdout_lift": {}, "holdout_incremental_revenue": {}, "engaged_repeat_rate": {},
        })["records"]
        self.assertEqual(values[0]["kpi_converted"], 2)
        self.assertEqual(self.variants.with_user(self.user).mapped("kpi_sent"), self.variants.mapped("kpi_sent"))
