import hashlib
import hmac
import json
import socket
from datetime import timedelta

from odoo.exceptions import ValidationError
from odoo.tools import mute_logger

from .common import NOW
from .steps_common import Receiver, StepsCommon

SECRET = "s3cret-for-tests"


class TestStepWebhook(StepsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.receiver = Receiver().start()
        cls.addClassCleanup(cls.receiver.stop)
        cls.sequence = cls.make_sequence("Notify the CRM", [{
            "step_type": "webhook", "name": "Tell the CRM", "delay_value": 0,
            "webhook_url": cls.receiver.url, "webhook_timeout": 5,
            "webhook_body": '{"customer": {{ customer.name|tojson }}, "email": {{ customer.email|tojson }}, '
                            '"sequence": {{ sequence.name|tojson }}, "order": {{ order.name|tojson }}}',
        }])
        cls.step = cls.sequence.step_ids
        cls.step.sudo().webhook_secret = SECRET

    def setUp(self):
        super().setUp()
        self.receiver.requests.clear()
        self.receiver.answers.clear()

    def assertSigned(self, request):
        expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
        self.assertTrue(hmac.compare_digest(request["headers"]["X-Behavioral-Signature"], expected))

    def test_posted_signed_and_retried_after_500(self):
        self.receiver.answers = [500]
        wendy = self.new_contact("Wendy Hook")
        self.run_crons(NOW + timedelta(minutes=1))
        enrollment = self.enrollments(self.sequence, wendy)
        self.assertEqual(len(self.receiver.requests), 1)
        first = self.receiver.requests[0]
        self.assertSigned(first)
        self.assertEqual(first["path"], "/hooks/shop")
        self.assertEqual(first["headers"]["Content-Type"], "application/json")
        self.assertEqual(json.loads(first["body"]), {
            "customer": "Wendy Hook", "email": "wendy@example.com", "sequence": "Notify the CRM", "order": None,
        })
        # a server error is transient: the enrollment waits and retries, never sleeping in the cron
        self.assertRecordValues(enrollment, [{"state": "running", "retry_count": 1, "step_id": self.step.id}])
        self.assertIn("500", enrollment.wait_reason)
        trace = enrollment.trace_ids
        self.assertRecordValues(trace, [{"state": "failed", "webhook_status": 500, "failure_type": "webhook_server"}])

        self.run_crons(NOW + timedelta(minutes=3))
        self.assertEqual(len(self.receiver.requests), 2)
        second = self.receiver.requests[1]
        self.assertSigned(second)
        self.assertEqual(second["body"], first["body"])
        self.assertEqual(second["headers"]["X-Behavioral-Delivery"], first["headers"]["X-Behavioral-Delivery"])
        self.assertEqual(enrollment.trace_ids, trace)
        self.assertRecordValues(trace, [{"state": "sent", "webhook_status": 200, "failure_type": False}])
        self.assertEqual(enrollment.state, "done")

    def test_tampered_body_fails_verification(self):
        """The signature covers the body: a receiver detects a changed one."""
        self.new_contact("Tina Tamper")
        self.run_crons(NOW + timedelta(minutes=1))
        request = dict(self.receiver.requests[0])
        request["body"] = request["body"].replace(b"Tina", b"Eve")
        with self.assertRaises(AssertionError):
            self.assertSigned(request)

    def test_4xx_is_a_permanent_failure(self):
        self.receiver.answers = [404]
        rita = self.new_contact("Rita Refused")
        self.run_crons(NOW + timedelta(minutes=1))
        enrollment = self.enrollments(self.sequence, rita)
        self.assertRecordValues(enrollment, [{"state": "failed", "failure_type": "webhook_rejected"}])
        self.assertRecordValues(enrollment.trace_ids, [{"state": "failed", "webhook_status": 404}])
        self.run_crons(NOW + timedelta(hours=1))
        self.assertEqual(len(self.receiver.requests), 1)

    def test_unreachable_is_retried_then_fails(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            closed_port = sock.getsockname()[1]
        self.step.webhook_url = f"http://127.0.0.1:{closed_port}/gone"
        uma = self.new_contact("Uma Unreachable")
        at = NOW + timedelta(minutes=1)
        self.run_crons(at)
        enrollment = self.enrollments(self.sequence, uma)
        self.assertRecordValues(enrollment, [{"state": "running", "retry_count": 1}])
        self.assertEqual(enrollment.trace_ids.failure_type, "webhook_timeout")
        for _attempt in range(5):
            at = enrollment.next_due + timedelta(minutes=1)
            self.run_crons(at)
        self.assertRecordValues(enrollment, [{"state": "failed", "failure_type": "webhook_timeout"}])

    def test_bad_template_refused_on_save(self):
        cases = {
            "syntax": '{"name": {{ customer.name|tojson }',
            "unknown variable": '{"name": {{ shopper.name|tojson }}}',
            "not json": '{name: {{ customer.name }}}',
            "sandbox": '{"x": {{ customer.__class__.__mro__|tojson }}}',
        }
        for label, body in cases.items():
            with self.subTest(label), self.assertRaisesRegex(ValidationError, "JSON body"), \
                    mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                self.step.write({"webhook_body": body})
        self.step.invalidate_recordset()
        self.assertIn("customer.name|tojson", self.step.webhook_body)

    def test_sample_body_is_valid(self):
        step = self.env["behavioral.sequence.step"].create({
            "sequence_id": self.sequence.id, "step_type": "webhook", "delay_value": 1,
            "webhook_url": "https://crm.example.com/hooks",
        })
        self.assertFalse(step._get_webhook_template_problem())
        self.assertTrue(step.sudo().webhook_secret)
