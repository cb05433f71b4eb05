from datetime import timedelta

from odoo.exceptions import AccessError
from odoo.tests.common import users

from .common import NOW, BehavioralCommon


class TestConsent(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start(cls, cls.cart_sequence)
        cls.step1 = cls.cart_sequence.step_ids.sorted()[0]

    def assert_only_bob_emailed(self):
        """Alice and Bob leave a cart; only Bob gets the first email."""
        self.make_cart(self.alice)
        self.make_cart(self.bob)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.alice, count=0)
        self.assertQueued(self.bob, count=1)

    def test_blacklisted_before_enrollment(self):
        """A blocklisted customer gets nothing; the refusal is kept with its reason."""
        self.env["mail.blacklist"]._add("alice@example.com")
        self.assert_only_bob_emailed()
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertRecordValues(enrollment.trace_ids, [{
            "step_id": self.step1.id, "state": "canceled", "failure_type": "mail_bl",
            "state_msg": "Blocklisted", "mail_mail_id": False,
        }])
        self.assertIn("no consent (Blocklisted)", enrollment.trigger_id.state_msg)

    def test_blacklisted_after_first_email(self):
        """Unsubscribing after email 1 cancels email 2 and ends the series."""
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.alice)
        self.env["mail.blacklist"]._add("Alice <ALICE@example.com>")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2))
        self.assertFalse(self._new_mails)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertEqual(enrollment.trace_ids.sorted("id").mapped("state"), ["sent", "canceled"])
        self.assertEqual(enrollment.trace_ids.sorted("id")[-1].failure_type, "mail_bl")

    def test_opted_out_of_topic(self):
        """Customers opted out of one of the sequence's topics get nothing."""
        topic = self.env["mailing.list"].create({"name": "Shop reminders", "is_public": True})
        self.cart_sequence.mailing_list_ids = topic
        self.env["mailing.contact"].create({
            "name": "Alice", "email": "alice@example.com",
            "subscription_ids": [(0, 0, {"list_id": topic.id, "opt_out": True})],
        })
        self.env["mailing.contact"].create({
            "name": "Bob", "email": "bob@example.com",
            "subscription_ids": [(0, 0, {"list_id": topic.id, "opt_out": False})],
        })
        self.assert_only_bob_emailed()
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertEqual(enrollment.exit_reason, "opted_out")
        self.assertEqual(enrollment.trace_ids.failure_type, "mail_optout")

    def test_subscribers_only(self):
        topic = self.env["mailing.list"].create({"name": "Newsletter"})
        self.cart_sequence.write({"consent_mode": "subscribed", "mailing_list_ids": [(6, 0, topic.ids)]})
        self.env["mailing.contact"].create({
            "name": "Bob", "email": "bob@example.com",
            "subscription_ids": [(0, 0, {"list_id": topic.id})],
        })
        self.assert_only_bob_emailed()

    def test_bounced_address(self):
        """A customer whose address bounced gets no more marketing email."""
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        mail = self.assertQueued(self.alice)
        # the bounce comes back on the mailing trace, as mass_mailing records it
        mail.mailing_trace_ids.set_bounced(bounce_message="550 mailbox unavailable")
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "bounced"}])
        self.assertEqual(enrollment.trace_ids.trace_status, "bounce")

        # and a new cart of a bouncing address is refused at entry
        self.bob.message_bounce = 1
        self.make_cart(self.bob, at=NOW + timedelta(hours=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=4))
        self.assertQueued(self.bob, count=0)
        self.assertEqual(self.enrollments(self.cart_sequence, self.bob).exit_reason, "bounced")

    def test_invalid_email(self):
        self.alice.email = "not-an-email"
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertFalse(self._new_mails)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertEqual(enrollment.exit_reason, "no_email")
        self.assertEqual(enrollment.trace_ids.failure_type, "mail_email_invalid")

    def test_transactional_ignores_blocklist_only(self):
        """A transactional sequence reaches a blocklisted customer, without unsubscribe footer."""
        self.order_sequence.consent_mode = "transactional"
        self.start(self.order_sequence)
        self.env["mail.blacklist"]._add("carol@example.com")
        order = self.env["sale.order"].create({
            "partner_id": self.carol.id,
            "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        mail = self.assertQueued(self.carol, sequence=self.order_sequence)
        self.assertIn(order.name, mail.subject)

    @users("marketer")
    def test_only_administrators_go_transactional(self):
        sequence = self.env["behavioral.sequence"].create({"name": "Receipts", "trigger_type": "order_confirmed"})
        with self.assertRaises(AccessError):
            sequence.consent_mode = "transactional"
        self.assertEqual(sequence.consent_mode, "marketing")
