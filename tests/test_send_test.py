from datetime import timedelta

from freezegun import freeze_time

from odoo.exceptions import UserError
from odoo.tests.common import users

from .common import NOW
from .steps_common import StepsCommon, email_step


class TestSendTest(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.step = cls.cart_sequence.step_ids.sorted()[0]

    def _send_test(self, partner, email_to="tester@example.com", step=None):
        wizard = self.env["behavioral.step.test"].with_context(default_step_id=(step or self.step).id).create({
            "partner_id": partner.id, "email_to": email_to,
        })
        with self.mock_queue(), freeze_time(NOW):
            wizard.action_send()
        return wizard

    @users("marketer")
    def test_test_email_with_the_customers_cart(self):
        """Rendered with the customer's own cart, sent to the tester only,
        never counted."""
        self.make_cart(self.alice)
        wizard = self._send_test(self.alice.with_env(self.env))
        self.assertFalse(wizard.enrollment_id)
        mail = self._new_mails
        self.assertEqual(len(mail), 1)
        self.assertEqual(mail.subject, "[TEST] You left something in your cart")
        self.assertEqual(mail.email_to, "tester@example.com")
        self.assertFalse(mail.recipient_ids)
        self.assertIn("Hi Alice,", mail.body_html)
        self.assertIn("Olive Tree", mail.body_html)
        self.assertIn("/shop/cart?access_token=", mail.body_html)
        self.assertFalse(mail.mailing_id)
        self.assertFalse(mail.mailing_trace_ids)
        # nothing counts, nothing was enrolled
        self.env.invalidate_all()
        self.assertFalse(self.env["behavioral.enrollment"].sudo().search([("partner_id", "=", self.alice.id)]))
        self.assertFalse(self.env["behavioral.trace"].sudo().search([("step_id", "=", self.step.id)]))
        self.assertEqual(self.step.sent_count, 0)

    def test_test_email_uses_an_existing_enrollment(self):
        self.start(self.cart_sequence)
        self.make_cart(self.bob)
        self.run_crons(NOW + timedelta(hours=3), advance=False)
        enrollment = self.enrollments(self.cart_sequence, self.bob)
        wizard = self._send_test(self.bob)
        self.assertEqual(wizard.enrollment_id, enrollment)
        self.assertIn("Hi Bob,", self._new_mails.body_html)
        self.assertFalse(enrollment.trace_ids)

    def test_bad_address_refused(self):
        with self.assertRaisesRegex(UserError, "valid address"):
            self._send_test(self.alice, email_to="not an address")

    def test_only_email_steps(self):
        sequence = self.make_sequence("Tags", [{"step_type": "tag", "delay_value": 0,
                                               "tag_ids": [(0, 0, {"name": "T"})]}], start=False)
        with self.assertRaisesRegex(UserError, "Only email steps"):
            self._send_test(self.alice, step=sequence.step_ids)


class TestPreview(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.running = cls.make_sequence("Running news", [email_step("News")])

    def test_preview_is_a_dry_run_on_real_history(self):
        draft = self.make_sequence("Welcome draft", [email_step("One"), email_step("Two", delay=2),
                                                     {"step_type": "tag", "delay_value": 1,
                                                      "tag_ids": [(0, 0, {"name": "P"})]}],
                                   start=False, partner_domain="[('function', '!=', 'Competitor')]")
        # two weeks of history: contacts created, the running sequence mailed them
        past = NOW - timedelta(days=10)
        pia = self.new_contact("Pia Past", at=past)
        rival = self.new_contact("Rex Rival", at=past, function="Competitor")
        old = self.new_contact("Otis Old", at=NOW - timedelta(days=40))
        with self.mock_queue():
            self.run_crons(past + timedelta(minutes=1))
        triggers = self.env["behavioral.trigger"].search([("partner_id", "in", (pia | rival | old).ids)])
        states = triggers.mapped("state")
        with self.mock_queue(), freeze_time(NOW):
            preview = self.env["behavioral.sequence.preview"].create({"sequence_id": draft.id, "days": 30})
            preview.action_run()
            self.assertFalse(self._new_mails)
        # (the database may hold other contacts' history: look at these ones)
        lines = {line.partner_id: line for line in preview.line_ids if line.partner_id in pia | rival | old}
        self.assertEqual(set(lines), {pia, rival})
        self.assertRecordValues(lines[pia], [{
            "would_enter": True, "email_count": 2, "other_email_count": 1, "total_email_count": 3}])
        self.assertRecordValues(lines[rival], [{"would_enter": False, "email_count": 0}])
        self.assertIn("does not match the filter", lines[rival].reason)
        self.assertEqual(preview.entered_count, len(preview.line_ids.filtered("would_enter")))
        self.assertEqual(preview.email_count, 2 * preview.entered_count)
        # nothing was created or changed
        self.assertFalse(self.enrollments(draft))
        self.assertEqual(triggers.mapped("state"), states)
        self.assertEqual(draft.state, "draft")
