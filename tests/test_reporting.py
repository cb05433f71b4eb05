"""Reporting: step mailings named after their sequence and step, out of
Email Marketing's lists and reports; rates next to counts; pivot and graph
views; the email a customer received, kept for staff for a retention period."""
from datetime import timedelta

from freezegun import freeze_time
from lxml import etree

from odoo.exceptions import UserError
from odoo.tests.common import users

from .common import NOW, BehavioralCommon


class TestReporting(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.step1, cls.step2, cls.step3 = cls.cart_sequence.step_ids.sorted()
        cls.dave = cls.env["res.partner"].with_context(behavioral_no_capture=True).create(
            {"name": "Dave Customer", "email": "dave@example.com"})
        cls.start(cls, cls.cart_sequence)
        cls.carts = {partner: cls.make_cart(cls, partner) for partner in cls.customers | cls.dave}
        cls.run_crons(cls, NOW + timedelta(hours=3))
        cls.traces = cls.env["behavioral.trace"].search([("sequence_id", "=", cls.cart_sequence.id)])
        assert len(cls.traces) == 4, cls.traces
        by_partner = {trace.partner_id: trace for trace in cls.traces}
        # Alice and Bob open the first email, Alice clicks it and orders her cart,
        # Carol unsubscribes after it (blocklist), Dave does nothing
        by_partner[cls.alice].mailing_trace_id.set_opened()
        by_partner[cls.bob].mailing_trace_id.set_opened()
        by_partner[cls.alice].mailing_trace_id.set_clicked()
        blocked = cls.env["mail.blacklist"]._add("carol@example.com")
        # the database stamps it with its own clock: put it on the test's
        blocked.flush_recordset()
        cls.env.cr.execute("UPDATE mail_blacklist SET write_date = %s WHERE id = %s",
                           (NOW + timedelta(hours=4), blocked.id))
        blocked.invalidate_recordset()
        cls.confirm(cls, cls.carts[cls.alice], NOW + timedelta(hours=5))
        cls.run_crons(cls, NOW + timedelta(hours=5, minutes=1))

    def test_mailing_named_after_sequence_and_step(self):
        mailing = self.step1.mailing_id
        self.assertEqual(mailing.name, "Abandoned cart recovery – You left something in your cart")
        self.assertEqual(mailing.source_id.name, mailing.name, "the name is the UTM source")
        self.assertEqual(mailing.subject, "You left something in your cart")
        self.cart_sequence.name = "Cart reminders"
        self.assertEqual(mailing.name, "Cart reminders – You left something in your cart")
        self.step1.subject = "Forgot something?"
        self.assertEqual(mailing.source_id.name, "Cart reminders – Forgot something?")
        # placeholders show as their default value
        self.step1.subject = "{{ object.partner_id.name ||| Hello }}, your cart"
        self.assertEqual(mailing.name, "Cart reminders – Hello, your cart")
        self.assertEqual(self.env.ref("behavioral_email.sequence_order_step_1").mailing_id.name,
                         "Thank you for your order – Thank you for your order …")
        # links carry it as utm_source
        tracker = self.env["link.tracker"].search([("mass_mailing_id", "=", mailing.id)], limit=1)
        self.assertEqual(tracker.source_id, mailing.source_id)

    @users("marketer")
    def test_kept_out_of_email_marketing(self):
        Mailing = self.env["mailing.mailing"]
        for xmlid in ("mass_mailing.mailing_mailing_action_mail",
                      "mass_mailing.action_view_mass_mailings_from_campaign"):
            action = self.env["ir.actions.act_window"]._for_xml_id(xmlid)
            domain = eval(action["domain"], {"uid": self.env.uid})  # noqa: S307 - a domain of our own data
            self.assertFalse(Mailing.search(domain) & self.cart_sequence.step_ids.mailing_id, xmlid)
        report = self.env["mailing.trace.report"].search([])
        self.assertFalse(report.filtered(lambda row: row.name and "Abandoned cart recovery" in row.name))

    @users("marketer")
    def test_rates_next_to_counts(self):
        """The step form shows each count with its rate (the key numbers of
        behavioral.kpi.mixin)."""
        step = self.env["behavioral.sequence.step"].browse(self.step1.id)
        self.assertRecordValues(step, [{
            "sent_count": 4, "opened_count": 2, "clicked_count": 1,
            "kpi_open_rate": 0.5, "kpi_click_rate": 0.25,
        }])
        arch = step.get_views([(False, "form")])["views"]["form"]["arch"]
        for fname in ("kpi_open_rate", "kpi_click_rate", "kpi_conversion_rate", "kpi_unsubscribe_rate"):
            self.assertIn(f'name="{fname}"', arch)

    @users("marketer")
    def test_pivot_and_graph(self):
        for model in ("behavioral.enrollment", "behavioral.trace"):
            views = self.env[model].get_views([(False, "pivot"), (False, "graph")])
            for view_type in ("pivot", "graph"):
                etree.fromstring(views["views"][view_type]["arch"])
            action = self.env["ir.actions.act_window"]._for_xml_id(
                f"behavioral_email.{model.replace('.', '_')}_action")
            self.assertIn("pivot", action["view_mode"])
            self.assertIn("graph", action["view_mode"])
        groups = self.env["behavioral.enrollment"].read_group(
            [("sequence_id", "=", self.cart_sequence.id)], ["revenue:sum"], ["state"])
        by_state = {group["state"]: group for group in groups}
        self.assertEqual(by_state["exited"]["revenue"], self.carts[self.alice].amount_untaxed)
        self.assertEqual(by_state["running"]["state_count"], 3)
        statuses = self.env["behavioral.trace"].read_group(
            [("sequence_id", "=", self.cart_sequence.id)], ["trace_status"], ["trace_status"])
        self.assertEqual({g["trace_status"]: g["trace_status_count"] for g in statuses},
                         {"open": 2, "outgoing": 2})

    @users("marketer")
    def test_view_the_email_a_customer_received(self):
        trace = self.env["behavioral.trace"].browse(
            self.traces.filtered(lambda t: t.partner_id == self.bob).id)
        action = trace.action_view_email()
        self.assertEqual((action["res_model"], action["res_id"], action["target"]),
                         ("behavioral.trace", trace.id, "new"))
        [values] = trace.web_read({"body_html": {}, "subject": {}})
        self.assertIn("Olive Tree", values["body_html"])
        self.assertIn("Hi Bob,", values["body_html"])
        self.assertEqual(values["subject"], "You left something in your cart")
        form = self.env["behavioral.trace"].get_views([(action["views"][0][0], "form")])
        self.assertIn("body_html", form["views"]["form"]["arch"])

    def test_old_email_copies_are_deleted_counts_stay(self):
        """The copy of each email is personal data kept for a retention
        period (90 days as shipped): the daily clean-up clears the copies
        older than that; the emails stay in the reports, every count the
        same, and the email view says that the copy is no longer kept."""
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=27, minutes=1))  # the second reminder
        Trace = self.env["behavioral.trace"]
        traces = Trace.search([("sequence_id", "=", self.cart_sequence.id)])
        first = traces.filtered(lambda t: t.step_id == self.step1)
        second = traces.filtered(lambda t: t.step_id == self.step2 and t.state == "sent")
        canceled = traces.filtered(lambda t: t.step_id == self.step2 and t.state == "canceled")
        self.assertEqual(len(first), 4)
        self.assertEqual(second.partner_id, self.bob | self.dave)
        self.assertEqual(canceled.partner_id, self.carol, "blocklisted after the first reminder")
        self.assertTrue(all((first | second).mapped("body_html")))
        self.assertFalse(canceled.body_html)

        def counts():
            self.env.invalidate_all()
            steps = self.step1 | self.step2
            return (
                [(step.sent_count, step.opened_count, step.clicked_count) for step in steps],
                [(trace.state, trace.trace_status, trace.subject) for trace in traces],
                Trace.search_count([("sequence_id", "=", self.cart_sequence.id)]),
            )

        before = counts()
        self.assertEqual(before[0], [(4, 2, 1), (2, 0, 0)])
        self.assertEqual(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.trace_body_retention_days"), "90")
        # the first reminders (NOW + 3 h) are 90 days old, the second ones (NOW + 27 h) are not
        at = NOW + timedelta(days=90, hours=4)
        with freeze_time(at):
            self.env["behavioral.trigger"]._cron_gc()
        self.assertEqual(counts(), before)
        self.assertRecordValues(first, [{"body_html": False, "body_purged_on": at}] * 4)
        self.assertRecordValues(second, [{"body_purged_on": False}] * 2)
        self.assertTrue(all(second.mapped("body_html")))
        self.assertIn("Hi Bob,", second.filtered(lambda t: t.partner_id == self.bob).body_html)
        self.assertFalse(canceled.body_purged_on, "it never had a copy")

        # what staff see of a deleted copy
        trace = first.filtered(lambda t: t.partner_id == self.bob).with_user(self.user_marketing)
        action = trace.action_view_email()
        self.assertEqual((action["res_model"], action["res_id"]), ("behavioral.trace", trace.id))
        arch = etree.fromstring(trace.get_views([(action["views"][0][0], "form")])["views"]["form"]["arch"])
        [notice] = arch.xpath("//div[contains(@class, 'alert')]")
        self.assertIn("no longer kept", " ".join(notice.itertext()))
        self.assertEqual(notice.get("invisible"), "body_html or not body_purged_on")
        [values] = trace.web_read({"body_html": {}, "body_purged_on": {}, "subject": {}})
        self.assertEqual((values["body_html"], values["subject"]), (False, "You left something in your cart"))
        with self.assertRaisesRegex(UserError, "was not kept"):
            canceled.with_user(self.user_marketing).action_view_email()

        # 0 keeps the copies forever
        self.env["ir.config_parameter"].sudo().set_param("behavioral_email.trace_body_retention_days", "0")
        with freeze_time(NOW + timedelta(days=400)):
            self.env["behavioral.trigger"]._cron_gc()
        self.assertTrue(all(second.mapped("body_html")))
        self.env["ir.config_parameter"].sudo().set_param("behavioral_email.trace_body_retention_days", "90")
        with freeze_time(NOW + timedelta(days=400)):
            self.env["behavioral.trigger"]._cron_gc()
        self.assertEqual(counts(), before)
        self.assertFalse(any((first | second).mapped("body_html")))
        self.assertRecordValues(first, [{"body_purged_on": at}] * 4)
