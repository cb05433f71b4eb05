"""Orders credited to the email the customer touched last, and their net
revenue after credit notes."""
import re
from datetime import timedelta
from urllib.parse import urlparse

from freezegun import freeze_time

from odoo.tests.common import HttpCase

from .common import NOW, BehavioralCommon

BODY = '<p>Hi <t t-out="object.partner_id.name"/>, <a href="https://shop.example.com/shop">visit the shop</a></p>'


class TestAttribution(HttpCase, BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sequence = cls.env["behavioral.sequence"].create({
            "name": "Welcome", "trigger_type": "partner_created",
            "step_ids": [(0, 0, {"subject": "Welcome", "body_html": BODY, "delay_value": 0})],
        })
        cls.start(cls, cls.sequence)
        cls.newsletter = cls.env["mailing.mailing"].create({
            "subject": "Spring newsletter", "body_html": "<p>News</p>",
            "mailing_model_id": cls.env["ir.model"]._get_id("res.partner"),
        })

    def signup(self, name, at=NOW):
        with freeze_time(at):
            return self.env["res.partner"].create({"name": name, "email": f"{name.lower()}@example.com"})

    def send_emails(self, at):
        """Run the crons and hand the queued emails to the (mocked) mail
        server; return what the server got."""
        with self.mock_queue():
            self.run_crons(at)
            self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment").send()
        return self._mails

    def order(self, partner, at, qty=1):
        order = self.env["sale.order"].create({
            "partner_id": partner.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": qty})],
        })
        self.confirm(order, at)
        return order

    def trace_of(self, partner, sequence=None):
        return self.env["behavioral.trace"].search([
            ("partner_id", "=", partner.id), ("sequence_id", "=", (sequence or self.sequence).id)])

    def touch(self, traces, at, click=True):
        with freeze_time(at):
            traces.set_clicked() if click else traces.set_opened()

    # ------------------------------------------------------------

    def test_click_through_the_email_link_credits_the_order(self):
        dora = self.signup("Dora")
        [email] = self.send_emails(NOW + timedelta(minutes=1))
        # the customer clicks the link of the email she received
        link = re.search(r'href="([^"]*/r/[^"]+/m/\d+)"', email["body"]).group(1)
        with freeze_time(NOW + timedelta(hours=1)):
            response = self.url_open(urlparse(link).path, allow_redirects=False)
        self.assertEqual(response.status_code, 301)
        self.assertTrue(response.headers["Location"].startswith("https://shop.example.com/shop?utm_campaign="))
        trace = self.trace_of(dora)
        self.assertEqual(trace.links_click_datetime, NOW + timedelta(hours=1))

        order = self.order(dora, NOW + timedelta(days=2), qty=2)
        self.assertRecordValues(order, [{
            "behavioral_sequence_id": self.sequence.id,
            "behavioral_step_id": self.sequence.step_ids.id,
            "behavioral_variant_id": False,
            "behavioral_trace_id": trace.id,
        }])
        self.env.invalidate_all()
        self.assertRecordValues(self.sequence, [{
            "kpi_sent": 1, "kpi_clicked": 1, "kpi_converted": 1, "kpi_revenue": 160.0,
            "kpi_conversion_rate": 1.0, "kpi_revenue_per_recipient": 160.0,
        }])
        self.assertRecordValues(self.env["behavioral.report.order"].search([("order_id", "=", order.id)]), [{
            "sequence_id": self.sequence.id, "trace_id": trace.id, "amount": 160.0, "refunded": 0.0,
            "revenue": 160.0,
        }])

    def test_tampered_click_links_change_nothing(self):
        dora = self.signup("Dora")
        self.send_emails(NOW + timedelta(minutes=1))
        trace = self.trace_of(dora)
        with freeze_time(NOW + timedelta(hours=1)):
            for path in ("/r/nosuchcode/m/%s" % trace.mailing_trace_id.id, "/r/x/m/999999999"):
                response = self.url_open(path, allow_redirects=False)
                self.assertEqual(response.status_code, 404)
        self.assertFalse(trace.links_click_datetime)
        self.assertFalse(self.order(dora, NOW + timedelta(days=1)).behavioral_sequence_id)

    def test_attribution_windows(self):
        customers = [self.signup(name) for name in ("Ann", "Ben", "Cid", "Dan")]
        self.send_emails(NOW + timedelta(minutes=1))
        ann, ben, cid, dan = customers
        start = NOW + timedelta(hours=1)
        for partner in customers:
            self.touch(self.trace_of(partner).mailing_trace_id, start, click=partner in (ann, ben))
        # 5 days after a click, 1 day after an open (the sequence's defaults)
        self.assertTrue(self.order(ann, start + timedelta(days=4, hours=23)).behavioral_sequence_id)
        self.assertFalse(self.order(ben, start + timedelta(days=5, hours=1)).behavioral_sequence_id)
        self.assertTrue(self.order(cid, start + timedelta(hours=23)).behavioral_sequence_id)
        self.assertFalse(self.order(dan, start + timedelta(days=2)).behavioral_sequence_id)
        # the windows are the sequence's
        self.sequence.attribution_open_days = 3
        self.assertTrue(self.order(dan, start + timedelta(days=2, hours=1)).behavioral_sequence_id)
        # an order placed before the touch is not the email's
        eve = self.signup("Eve")
        self.send_emails(NOW + timedelta(minutes=2))
        self.touch(self.trace_of(eve).mailing_trace_id, start + timedelta(days=1))
        self.assertFalse(self.order(eve, start + timedelta(hours=2)).behavioral_sequence_id)

    def test_last_touch_wins_across_sequences_and_mailings(self):
        second = self.env["behavioral.sequence"].create({
            "name": "Welcome offer", "trigger_type": "partner_created",
            "step_ids": [(0, 0, {"subject": "An offer", "body_html": BODY, "delay_value": 1})],
        })
        self.start(second)
        fay, gus = self.signup("Fay"), self.signup("Gus")
        self.send_emails(NOW + timedelta(minutes=1))
        self.send_emails(NOW + timedelta(days=1, minutes=1))
        for partner in (fay, gus):
            self.touch(self.trace_of(partner).mailing_trace_id, NOW + timedelta(hours=1))
            self.touch(self.trace_of(partner, second).mailing_trace_id, NOW + timedelta(days=1, hours=1), click=False)
        # Fay: the second sequence's email was opened last
        order = self.order(fay, NOW + timedelta(days=1, hours=5))
        self.assertRecordValues(order, [{
            "behavioral_sequence_id": second.id, "behavioral_trace_id": self.trace_of(fay, second).id}])
        # Gus: then he clicked a newsletter: the newsletter gets the credit, no sequence does
        newsletter_trace = self.env["mailing.trace"].create({
            "mass_mailing_id": self.newsletter.id, "email": gus.email_normalized, "model": "res.partner",
            "res_id": gus.id, "trace_status": "sent",
        })
        self.touch(newsletter_trace, NOW + timedelta(days=1, hours=2))
        self.assertFalse(self.order(gus, NOW + timedelta(days=1, hours=5)).behavioral_sequence_id)
        # a confirmed order is attributed again when confirmed again
        order._action_cancel()
        order.action_draft()
        self.touch(self.trace_of(fay).mailing_trace_id, NOW + timedelta(days=1, hours=6))
        self.confirm(order, NOW + timedelta(days=1, hours=7))
        self.assertEqual(order.behavioral_sequence_id, self.sequence)

    def test_credit_note_lowers_the_revenue(self):
        self.tree.standard_price = 30.0
        hal = self.signup("Hal")
        self.send_emails(NOW + timedelta(minutes=1))
        self.touch(self.trace_of(hal).mailing_trace_id, NOW + timedelta(hours=1))
        order = self.order(hal, NOW + timedelta(hours=2), qty=2)
        self.assertEqual(order.behavioral_sequence_id, self.sequence)
        self.env.invalidate_all()
        self.assertEqual(self.sequence.kpi_revenue, 160.0)
        # margin from the product's cost: 160 - 2 * 30
        self.assertAlmostEqual(self.sequence.kpi_margin, 100.0)

        with freeze_time(NOW + timedelta(days=1)):
            invoice = order._create_invoices()
            invoice.action_post()
        self.env.invalidate_all()
        self.assertEqual(self.sequence.kpi_revenue, 160.0, "an invoice changes nothing")

        # the customer sends one tree back: a credit note for one of two
        with freeze_time(NOW + timedelta(days=10)):
            reversal = self.env["account.move.reversal"].with_context(
                active_model="account.move", active_ids=invoice.ids).create({
                    "reason": "Returned", "journal_id": invoice.journal_id.id})
            refund = self.env["account.move"].browse(reversal.refund_moves()["res_id"])
            refund.invoice_line_ids.quantity = 1
            refund.action_post()
        self.env.invalidate_all()
        self.assertEqual(self.sequence.kpi_revenue, 80.0)
        self.assertAlmostEqual(self.sequence.kpi_margin, 50.0, msg="the returned tree gives its margin back")
        self.assertRecordValues(self.env["behavioral.report.order"].search([("order_id", "=", order.id)]), [{
            "amount": 160.0, "refunded": 80.0, "revenue": 80.0, "margin": 50.0}])
        # a draft credit note counts for nothing, a full one for everything
        with freeze_time(NOW + timedelta(days=11)):
            reversal = self.env["account.move.reversal"].with_context(
                active_model="account.move", active_ids=invoice.ids).create({
                    "reason": "Returned", "journal_id": invoice.journal_id.id})
            second_refund = self.env["account.move"].browse(reversal.refund_moves()["res_id"])
            second_refund.invoice_line_ids.quantity = 1
        self.env.invalidate_all()
        self.assertEqual(self.sequence.kpi_revenue, 80.0)
        second_refund.action_post()
        self.env.invalidate_all()
        self.assertEqual(self.sequence.kpi_revenue, 0.0)
