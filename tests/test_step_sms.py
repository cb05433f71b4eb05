from datetime import timedelta

from .common import NOW
from .steps_common import StepsCommon


class TestStepSms(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.belgium = cls.env.ref("base.be")
        cls.sequence = cls.make_sequence("Welcome by SMS", [{
            "step_type": "sms", "delay_value": 0,
            "sms_body": "Hi {{ object.partner_id.name }}, welcome to the Garden Shop!",
        }])

    def _sms(self, partner):
        return self.env["sms.sms"].search([("partner_id", "=", partner.id)])

    def test_sms_queued_with_e164_number(self):
        """A local number is read in the customer's country and queued in E.164."""
        lou = self.new_contact("Lou Texter", mobile="0470 12 34 56", country_id=self.belgium.id)
        self.run_crons(NOW + timedelta(minutes=1))
        sms = self._sms(lou)
        self.assertRecordValues(sms, [{
            "number": "+32470123456", "state": "outgoing",
            "body": "Hi Lou Texter, welcome to the Garden Shop!",
        }])
        enrollment = self.enrollments(self.sequence, lou)
        self.assertRecordValues(enrollment.trace_ids, [{
            "state": "sent", "sms_id": sms.id, "sms_number": "+32470123456",
        }])
        self.assertEqual(enrollment.state, "done")

    def test_phone_used_only_when_it_is_a_mobile(self):
        mia = self.new_contact("Mia Mobile", phone="+32 470 99 88 77")
        fay = self.new_contact("Fay Fixed", phone="+32 2 555 12 34")
        self.run_crons(NOW + timedelta(minutes=1))
        self.assertEqual(self._sms(mia).number, "+32470998877")
        self.assertFalse(self._sms(fay))
        self.assertEqual(self.enrollments(self.sequence, fay).trace_ids.failure_type, "sms_number_format")

    def test_no_valid_mobile_cancels(self):
        nemo = self.new_contact("Nemo Nophone")
        bad = self.new_contact("Bad Number", mobile="12")
        self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._sms(nemo) | self._sms(bad))
        for partner, failure in ((nemo, "sms_number_missing"), (bad, "sms_number_format")):
            enrollment = self.enrollments(self.sequence, partner)
            self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "no_phone"}])
            self.assertRecordValues(enrollment.trace_ids, [{"state": "canceled", "failure_type": failure}])

    def test_phone_blocklist_honoured(self):
        self.env["phone.blacklist"].sudo().add("+32 470 55 55 55")
        blocked = self.new_contact("Blocked Texter", mobile="+32470555555")
        self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._sms(blocked))
        enrollment = self.enrollments(self.sequence, blocked)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertEqual(enrollment.trace_ids.failure_type, "sms_blacklist")

    def test_topic_opt_out_honoured_at_send_time(self):
        """Opting out of the sequence's topic after entering stops the SMS."""
        topic = self.env["mailing.list"].create({"name": "Garden news"})
        self.sequence.mailing_list_ids = topic
        self.sequence.step_ids.delay_value = 1
        olga = self.new_contact("Olga Optout", mobile="+32470111222")
        self.run_crons(NOW + timedelta(minutes=1))
        self.assertEqual(self.enrollments(self.sequence, olga).state, "running")
        self.env["mailing.contact"].create({
            "name": olga.name, "email": olga.email,
            "subscription_ids": [(0, 0, {"list_id": topic.id, "opt_out": True})],
        })
        self.run_crons(NOW + timedelta(days=1, minutes=1))
        self.assertFalse(self._sms(olga))
        enrollment = self.enrollments(self.sequence, olga)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "opted_out"}])
        self.assertEqual(enrollment.trace_ids.failure_type, "mail_optout")

    def test_sms_step_needs_text_to_start(self):
        sequence = self.make_sequence("Empty SMS", [{"step_type": "sms", "delay_value": 0}], start=False)
        with self.assertRaisesRegex(Exception, "has no text"):
            sequence.action_start()
