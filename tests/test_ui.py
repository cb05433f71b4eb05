"""The back office in a real browser: a marketer builds and starts a sequence."""
from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.tests.common import HttpCase, tagged


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestSequenceForm(HttpCase):
    test_module = "behavioral_email"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.marketer = mail_new_test_user(
            cls.env, login="tour_marketer", password="tour_marketer", name="Tess Tour",
            email="tess@example.com", groups="base.group_user,behavioral_email.group_behavioral_user")

    def test_marketer_builds_and_starts_a_sequence(self):
        self.start_tour("/odoo", "behavioral_email_sequence_tour", login="tour_marketer", timeout=120)
        sequence = self.env["behavioral.sequence"].search([("name", "=", "Tour welcome")])
        self.assertRecordValues(sequence, [{"state": "running", "trigger_type": "partner_created"}])
        step = sequence.step_ids
        self.assertRecordValues(step, [{"subject": "Nice to meet you", "delay_value": 2, "delay_unit": "hours"}])
        self.assertIn("welcome aboard", step.body_html)
        self.assertTrue(step.mailing_id.use_in_behavioral)
