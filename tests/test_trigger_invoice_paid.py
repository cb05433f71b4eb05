"""Trigger kind ``invoice_paid``: a customer invoice becomes paid."""
from datetime import timedelta
from unittest.mock import patch

from freezegun import freeze_time
from lxml import html

from odoo.tests.common import HttpCase, tagged

from .common import NOW, BehavioralCommon


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestInvoicePaid(HttpCase, BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sequence = cls.env["behavioral.sequence"].create({
            "name": "Thanks for your payment",
            "trigger_type": "invoice_paid",
            "step_ids": [(0, 0, {
                "delay_value": 1,
                "delay_unit": "days",
                "subject": "Thank you for paying {{ object.order_id.name }}",
                "body_html": "<p>Hi <t t-out=\"object.partner_id.name\"/>, we received "
                             "<t t-out=\"object.payload['amount_total']\"/> "
                             "<t t-out=\"object.payload['currency']\"/>.</p>",
            })],
        })

    # ------------------------------------------------------------
    # HELPERS
    # ------------------------------------------------------------

    def invoice_order(self, partner, at=NOW):
        """An order confirmed and invoiced, the invoice posted."""
        order = self.env["sale.order"].create({
            "partner_id": partner.id,
            "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(order, at)
        with freeze_time(at):
            invoice = order._create_invoices()
            invoice.action_post()
        return order, invoice

    def pay(self, invoices, at, amount=None):
        """Register a payment with accounting's own wizard."""
        with freeze_time(at):
            self.env["account.payment.register"].with_context(
                active_model="account.move", active_ids=invoices.ids,
            ).create({} if amount is None else {"amount": amount})._create_payments()

    def triggers(self):
        return self.env["behavioral.trigger"].search([("trigger_type", "=", "invoice_paid")])

    # ------------------------------------------------------------
    # TESTS
    # ------------------------------------------------------------

    def test_paid_invoice_starts_sequence(self):
        self.start(self.sequence)
        order, invoice = self.invoice_order(self.alice)
        self.pay(invoice, NOW + timedelta(hours=2))
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        trigger = self.triggers()
        self.assertRecordValues(trigger, [{
            "partner_id": self.alice.id, "res_model": "account.move", "res_id": invoice.id,
            "occurred_at": NOW + timedelta(hours=2), "state": "new",
        }])
        self.assertEqual(trigger.payload["order_id"], order.id)
        self.assertEqual(trigger.payload["amount_total"], 80.0)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=1))
        self.assertFalse(self._new_mails, "the email waits a day")
        enrollment = self.enrollments(self.sequence, self.alice)
        self.assertEqual(enrollment.order_id, order)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=2, minutes=1))
        mail = self.assertQueued(self.alice, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(mail.subject, f"Thank you for paying {order.name}")
        self.assertIn("Hi Alice Customer, we received 80.0", mail.body_html)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=2, minutes=2))
            self.run_crons(NOW + timedelta(days=3))
        self.assertFalse(self._new_mails, "rerunning the crons adds nothing")
        self.assertEqual(enrollment.state, "done")

    def test_partial_payment_waits_for_the_balance(self):
        _order, invoice = self.invoice_order(self.bob)
        self.pay(invoice, NOW + timedelta(hours=1), amount=30.0)
        self.assertEqual(invoice.payment_state, "partial")
        self.assertFalse(self.triggers())
        self.pay(invoice, NOW + timedelta(hours=3))
        self.assertEqual(len(self.triggers()), 1)
        self.assertEqual(self.triggers().occurred_at, NOW + timedelta(hours=3))

    def test_only_customer_invoices_of_customers(self):
        self.start(self.sequence)
        _order, invoice = self.invoice_order(self.carol)
        with freeze_time(NOW):
            refund = invoice._reverse_moves()
            refund.action_post()
            bill = self.env["account.move"].create({
                "move_type": "in_invoice", "partner_id": self.bob.id, "invoice_date": NOW.date(),
                "invoice_line_ids": [(0, 0, {"name": "Pots", "quantity": 1, "price_unit": 40.0})],
            })
            public_invoice = self.env["account.move"].create({
                "move_type": "out_invoice", "partner_id": self.public_partner.id,
                "invoice_line_ids": [(0, 0, {"name": "Counter sale", "quantity": 1, "price_unit": 10.0})],
            })
            (bill | public_invoice).action_post()
        # the credit note settles the invoice: a refund is no payment
        self.assertEqual(invoice.payment_state, "reversed")
        for move in bill | public_invoice:
            self.pay(move, NOW + timedelta(hours=1))
        self.assertEqual(set((refund | bill | public_invoice).mapped("payment_state")) - {"in_payment"}, {"paid"})
        self.assertFalse(self.triggers())

    def test_no_email_for_blocklisted_old_or_goal_met(self):
        self.sequence.goal = "order_again"
        self.start(self.sequence)
        self.env["mail.blacklist"]._add("bob@example.com")
        invoices = self.env["account.move"]
        for partner in (self.alice, self.bob, self.carol):
            invoices |= self.invoice_order(partner)[1]
        self.pay(invoices.filtered(lambda m: m.partner_id == self.carol), NOW - timedelta(days=4))
        self.pay(invoices.filtered(lambda m: m.partner_id != self.carol), NOW)
        self.run_crons(NOW + timedelta(minutes=1))
        # Alice orders again before the thank-you is due: the goal is met
        self.invoice_order(self.alice, at=NOW + timedelta(hours=5))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=5))
        self.assertFalse(self._new_mails)
        self.assertRecordValues(self.enrollments(self.sequence, self.bob), [{
            "state": "exited", "exit_reason": "blacklisted"}])
        self.assertRecordValues(self.enrollments(self.sequence, self.alice), [{
            "state": "exited", "exit_reason": "goal"}])
        carol_trigger = self.triggers().filtered(lambda t: t.partner_id == self.carol)
        self.assertIn("older than the entry window", carol_trigger.state_msg)

    def test_shipped_sequence_thanks_with_the_invoice(self):
        """The shipped "Thank you for your payment": a payment registered on
        the invoice of a shop order queues one email for its customer, with
        her invoice and a link that opens it on the portal without logging in;
        five days later, ideas for her next purchase. A blocklisted customer
        gets nothing."""
        shipped = self.env.ref("behavioral_email.sequence_invoice_paid")
        self.assertEqual(shipped.state, "draft")
        self.assertEqual(shipped.consent_mode, "marketing", "marketing, like the post-purchase series")
        self.start(shipped)
        self.env["mail.blacklist"]._add("bob@example.com")
        order, invoice = self.invoice_order(self.alice)
        _bob_order, bob_invoice = self.invoice_order(self.bob)
        self.pay(invoice, NOW + timedelta(hours=2))
        self.pay(bob_invoice, NOW + timedelta(hours=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=1))
        mail = self.assertQueued(self.alice, sequence=shipped)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(mail.subject, "Thank you for your payment")
        root = html.fromstring(mail.body_html)
        text = " ".join(root.text_content().split())
        self.assertIn("Hi Alice,", text)
        self.assertIn(f"We received your payment for invoice {invoice.name}. Thank you!", text)
        amount = invoice.currency_id.format(80.0).replace("\N{NO-BREAK SPACE}", " ")
        self.assertIn(f"Invoice {invoice.name} · {amount}", text)
        [button] = root.xpath("//a[contains(., 'View my invoice')]")
        code = button.get("href").rsplit("/r/", 1)[1]
        url = self.env["link.tracker.code"].search([("code", "=", code)]).link_id.url
        self.assertTrue(invoice.access_token)
        self.assertEqual(url, f"{invoice.get_base_url()}/my/invoices/{invoice.id}?access_token={invoice.access_token}")
        page = self.url_open(url.removeprefix(invoice.get_base_url()))
        self.assertEqual(page.status_code, 200)
        self.assertIn(invoice.name, page.text)
        self.assertRecordValues(self.enrollments(shipped, self.bob), [{"state": "exited", "exit_reason": "blacklisted"}])

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=5, hours=2))
        self.assertFalse(self._new_mails, "five days after the payment")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=5, hours=2, minutes=2))
        ideas = self.assertQueued(self.alice, sequence=shipped)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(ideas.subject, "Picked for you")
        self.assertIn(f"Thank you again for your order {order.name}.", " ".join(
            html.fromstring(ideas.body_html).text_content().split()))
        self.assertEqual(self.enrollments(shipped, self.alice).state, "done")

    def test_shipped_sequence_leaves_other_invoices_alone(self):
        """Invoices of orders the sales team took, and invoices paid back
        before the next email, get no email of the shipped sequence."""
        shipped = self.env.ref("behavioral_email.sequence_invoice_paid")
        self.start(shipped)
        quotation = self.env["sale.order"].create({
            "partner_id": self.carol.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(quotation, NOW)
        with freeze_time(NOW):
            backend_invoice = quotation._create_invoices()
            backend_invoice.action_post()
        self.pay(backend_invoice, NOW + timedelta(hours=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
        self.assertQueued(self.carol, count=0)
        trigger = self.triggers().filtered(lambda t: t.res_id == backend_invoice.id)
        self.assertIn("does not match the filter", trigger.state_msg)

    def test_capture_failure_never_breaks_the_payment(self):
        _order, invoice = self.invoice_order(self.alice)
        Trigger = type(self.env["behavioral.trigger"])
        with patch.object(Trigger, "_capture_invoice_paid", side_effect=RuntimeError("boom")), \
                self.assertLogs("odoo.addons.behavioral_email.models.account_move", "ERROR"):
            self.pay(invoice, NOW)
        self.assertIn(invoice.payment_state, ("paid", "in_payment"))
        self.assertFalse(self.triggers())
