"""The whole promise in one scenario: a customer in three running sequences
gets at most the capped number of emails per day, the most important first,
the rest later but never lost; nobody gets a marketing email in their quiet
hours, in their own time zone; a branch on "clicked" follows up with clickers
only; SMS, webhook and activity steps work end to end."""
import hashlib
import hmac
import json
from datetime import timedelta

import pytz

from odoo.addons.mail.tests.common import mail_new_test_user

from .common import NOW
from .steps_common import Receiver, email_step
from .test_branches import BranchCase

SECRET = "scenario-secret"


class TestCarefulMarketer(BranchCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.receiver = Receiver().start()
        cls.addClassCleanup(cls.receiver.stop)
        cls.company.write({
            "behavioral_quiet_start": 21.0, "behavioral_quiet_end": 8.0,
            "behavioral_cap_count": 2, "behavioral_cap_hours": 24,
        })
        cls.company.partner_id.tz = "Europe/Brussels"
        cls.seller = mail_new_test_user(
            cls.env, login="seller", name="Sam Seller", email="sam@example.com",
            groups="sales_team.group_sale_salesman")
        cls.welcome = cls.make_sequence("Welcome series", [email_step("Welcome to the Garden Shop")], priority=1)
        cls.follow_up = cls.env["behavioral.sequence.step"].create(dict(
            email_step("Since you clicked: 10% off", delay=1), sequence_id=cls.welcome.id, sequence=20,
            parent_id=cls.welcome.step_ids.id, branch_condition="clicked"))
        cls.tips = cls.make_sequence("Garden tips", [email_step("Five garden tips")], priority=5)
        cls.offers = cls.make_sequence("Weekly offers", [
            email_step("This week's offer"),
            {"step_type": "sms", "delay_value": 1, "delay_unit": "hours",
             "sms_body": "{{ object.partner_id.name }}, this week's offer ends soon!"},
            {"step_type": "webhook", "delay_value": 0, "webhook_url": cls.receiver.url,
             "webhook_body": '{"customer": {{ customer.name|tojson }}, "step": {{ step.name|tojson }}}'},
            {"step_type": "activity", "delay_value": 0, "activity_summary": "Call {{ object.partner_id.name }}",
             "activity_user_id": cls.env.ref("base.user_admin").id},
        ], priority=9)
        cls.offers.step_ids.filtered(lambda s: s.step_type == "webhook").sudo().webhook_secret = SECRET

    def tick_until(self, end, start, every=timedelta(minutes=30)):
        at = start
        while at <= end:
            self.run_crons(at)
            at += every
        return at

    def test_three_sequences_one_careful_marketer(self):
        self.receiver.answers = [500]
        # Carla in Paris, a salesperson's customer; Nico has no time zone but a Japanese mobile,
        # and signs up at 22:00 in Tokyo (13:00 UTC): quiet hours there
        carla = self.new_contact("Carla Clicker", tz="Europe/Paris", mobile="+33 6 12 34 56 78",
                                 user_id=self.seller.id)
        nico = self.new_contact("Nico Tokyo", at=NOW + timedelta(hours=4), mobile="+81 90-1234-5678")
        with self.mock_queue():
            at = self.tick_until(NOW + timedelta(hours=2), NOW + timedelta(minutes=1))
            welcome_mail = self._new_mails.filtered(
                lambda m: carla in m.recipient_ids and m.subject == "Welcome to the Garden Shop")
            self.click_email(welcome_mail, NOW + timedelta(hours=2))
            self.tick_until(NOW + timedelta(days=3), at)

        traces = self.env["behavioral.trace"].search([("partner_id", "in", (carla | nico).ids)])
        emails = traces.filtered(lambda t: t.step_id.step_type == "email" and t.state == "sent")

        # the cap: never more than 2 emails in 24 hours, the rest delayed, none lost
        for partner in (carla, nico):
            times = sorted(emails.filtered(lambda t, p=partner: t.partner_id == p).mapped("executed_at"))
            for moment in times:
                recent = [t for t in times if moment - timedelta(hours=24) < t <= moment]
                self.assertLessEqual(len(recent), 2, f"{partner.name} got {len(recent)} emails by {moment}")
        carla_emails = emails.filtered(lambda t: t.partner_id == carla).sorted(lambda t: (t.executed_at, t.id))
        self.assertEqual(carla_emails.mapped("subject"), [
            "Welcome to the Garden Shop", "Five garden tips",            # highest priorities first
            "Since you clicked: 10% off", "This week's offer",           # a day later: the offer waited
        ])
        self.assertEqual(carla_emails[2].executed_at - carla_emails[0].executed_at, timedelta(days=1))
        offer = self.enrollments(self.offers, carla)
        self.assertTrue(offer.event_ids.filtered(lambda e: "Frequency cap" in (e.reason or "")))

        # quiet hours in the recipient's own zone: Nico's emails wait for 08:00 in Tokyo
        nico_emails = emails.filtered(lambda t: t.partner_id == nico).sorted(lambda t: (t.executed_at, t.id))
        self.assertEqual(nico_emails.mapped("subject"),
                         ["Welcome to the Garden Shop", "Five garden tips", "This week's offer"])
        for partner, zone, trace in [(carla, "Europe/Paris", t) for t in carla_emails] + \
                [(nico, "Asia/Tokyo", t) for t in nico_emails]:
            local = pytz.utc.localize(trace.executed_at).astimezone(pytz.timezone(zone))
            self.assertTrue(8 <= local.hour < 21, f"{partner.name} emailed at {local} local time")
        self.assertEqual(nico_emails[0].executed_at.hour, 23)  # 08:00 in Tokyo

        # the branch on "clicked": only Carla clicked, only Carla got the follow-up
        self.assertEqual(self.follow_up.sent_count, 1)
        nico_follow_up = self.enrollments(self.welcome, nico).trace_ids.filtered(lambda t: t.step_id == self.follow_up)
        self.assertEqual(nico_follow_up.state, "skipped")

        # SMS, webhook and activity, end to end
        sms = self.env["sms.sms"].search([("partner_id", "in", (carla | nico).ids)], order="id")
        self.assertEqual(sms.mapped("number"), ["+33612345678", "+819012345678"])
        self.assertEqual(sms[0].body, "Carla Clicker, this week's offer ends soon!")
        self.assertEqual(len(self.receiver.requests), 3)  # Carla's first call got a 500 and was retried
        for request in self.receiver.requests:
            expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
            self.assertEqual(request["headers"]["X-Behavioral-Signature"], expected)
        self.assertEqual([json.loads(r["body"])["customer"] for r in self.receiver.requests],
                         ["Carla Clicker", "Carla Clicker", "Nico Tokyo"])
        activities = self.env["mail.activity"].search([
            ("res_model", "=", "res.partner"), ("res_id", "in", (carla | nico).ids)], order="res_id")
        self.assertEqual(activities.mapped("user_id"), self.seller | self.env.ref("base.user_admin"))
        self.assertEqual(activities.mapped("summary"), ["Call Carla Clicker", "Call Nico Tokyo"])
        self.assertEqual(set(self.enrollments(self.offers).filtered(
            lambda e: e.partner_id in carla | nico).mapped("state")), {"done"})
