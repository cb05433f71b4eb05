"""Transient delivery failures of the sequences' emails are retried.

The mail queue sends through Odoo's real path (process_email_queue, send,
_send, ir.mail_server) to a real SMTP server on loopback (aiosmtpd), or to a
closed port while the server is "down". Only Odoo's test-mode guard, which
stops ir.mail_server from opening any connection under tests, is lifted while
the queue runs.
"""
import socket
from contextlib import contextmanager
from datetime import timedelta
from unittest.mock import patch

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from freezegun import freeze_time

import odoo.modules.module
from odoo.tools import mute_logger

from .common import NOW, BehavioralCommon

# Odoo logs each failed attempt with its traceback; aiosmtpd logs every command
MUTED = ("odoo.addons.mail.models.mail_mail", "odoo.addons.behavioral_email.models.mail_mail", "mail.log")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SmtpRecorder(Message):
    """aiosmtpd handler: keeps every message received; answers RCPT for the
    addresses in ``rcpt_replies`` with the reply given there."""

    def __init__(self):
        super().__init__()
        self.messages = []
        self.rcpt_replies = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    def handle_message(self, message):
        self.messages.append(message)

    def received(self, email):
        """How many messages were delivered to ``email``."""
        return sum(1 for message in self.messages if message["X-RcptTo"].lower() == email)


class TestDeliveryRetry(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.smtp_port = free_port()
        cls.mail_server = cls.env["ir.mail_server"].create({
            "name": "Loopback", "smtp_host": "127.0.0.1", "smtp_port": cls.smtp_port,
            "smtp_encryption": "none", "sequence": 1,
        })
        cls.welcome_sequence.step_ids.mailing_id.mail_server_id = cls.mail_server
        cls.start(cls, cls.welcome_sequence)
        cls.first_step = cls.welcome_sequence.step_ids.sorted()[0]
        cls.queue_cron = cls.env.ref("mail.ir_cron_mail_scheduler_action")

    # ------------------------------------------------------------
    # HELPERS
    # ------------------------------------------------------------

    @contextmanager
    def smtp_up(self):
        """The SMTP server answers on the port while in this block."""
        recorder = SmtpRecorder()
        controller = Controller(recorder, hostname="127.0.0.1", port=self.smtp_port)
        controller.start()
        try:
            yield recorder
        finally:
            controller.stop()

    def run_queue(self, at):
        """Odoo's mail queue cron, at ``at``, really talking SMTP."""
        with freeze_time(at), patch.object(odoo.modules.module, "current_test", None), mute_logger(*MUTED):
            self.env["mail.mail"].process_email_queue()
        self.env.invalidate_all()

    def welcome(self, count, at=NOW, prefix="newcomer"):
        """``count`` new contacts, welcomed by the crons a minute later;
        returns the contacts and their queued welcome mails."""
        with freeze_time(at):
            partners = self.env["res.partner"].create([
                {"name": f"{prefix.title()} {i}", "email": f"{prefix}{i}@example.com"} for i in range(count)
            ])
        self.run_crons(at + timedelta(minutes=1))
        mails = self.env["mail.mail"].search([
            ("model", "=", "behavioral.enrollment"),
            ("res_id", "in", self.enrollments(self.welcome_sequence).filtered(
                lambda e: e.partner_id in partners).ids),
        ])
        self.assertEqual(len(mails), count)
        return partners, mails.sorted(lambda m: partners.ids.index(m.recipient_ids.id))

    def traces(self, partners):
        return self.env["behavioral.trace"].search([
            ("partner_id", "in", partners.ids), ("step_id", "=", self.first_step.id)])

    def queue_triggers(self, at):
        return self.env["ir.cron.trigger"].search([("cron_id", "=", self.queue_cron.id), ("call_at", "=", at)])

    # ------------------------------------------------------------
    # TESTS
    # ------------------------------------------------------------

    def test_outage_then_every_email_delivered_once(self):
        """40 welcome emails queued while the server is down are all delivered
        once it is back, each exactly once."""
        partners, mails = self.welcome(40)
        emails = partners.mapped("email")
        first_run = NOW + timedelta(minutes=2)
        self.run_queue(first_run)
        retry_at = first_run + timedelta(minutes=1)
        self.assertEqual(set(mails.mapped("state")), {"outgoing"})
        self.assertEqual(set(mails.mapped("scheduled_date")), {retry_at})
        self.assertEqual(set(mails.mapped("behavioral_retry_count")), {1})
        self.assertIn("Connection refused", mails[0].failure_reason)
        self.assertTrue(self.queue_triggers(retry_at), "the mail queue must run at the retry time")
        traces = self.traces(partners)
        self.assertEqual(set(traces.mapped("state")), {"sent"})
        self.assertIn("Delivery delayed", traces[0].state_msg)
        self.assertIn("Connection refused", traces[0].state_msg)
        self.assertEqual(set(traces.mapped("trace_status")), {"outgoing"})

        with self.smtp_up() as smtp:
            # not yet due: the queue leaves them alone
            self.run_queue(retry_at - timedelta(seconds=30))
            self.assertEqual(sum(smtp.received(email) for email in emails), 0)
            self.run_queue(retry_at)
            self.assertEqual({email: smtp.received(email) for email in emails}, dict.fromkeys(emails, 1))
            # a later run sends nothing again
            self.run_queue(retry_at + timedelta(hours=1))
            self.assertEqual(sum(smtp.received(email) for email in emails), 40)
        self.assertFalse(mails.exists(), "sent sequence emails are deleted, as any mass mailing's")
        self.assertEqual(set(traces.mapped("state")), {"sent"})
        self.assertEqual(set(traces.mapped("trace_status")), {"sent"})
        self.assertEqual(set(traces.mapped("state_msg")), {"Delivered after 1 failed attempt(s)."})
        message = smtp.messages[0]
        self.assertEqual(message["Subject"], "Welcome to Garden Shop")
        self.assertTrue(message["List-Unsubscribe"])

    def test_outage_queries_do_not_grow(self):
        """Putting a batch back in the queue costs the same whatever its size."""
        counts = []
        for index, size in enumerate((2, 5, 25)):
            at = NOW + timedelta(days=index)
            _partners, mails = self.welcome(size, at=at, prefix=f"wave{index}x")
            counts.append(self.count_queries(self.run_queue, at + timedelta(minutes=2))[0])
            self.assertEqual(set(mails.mapped("behavioral_retry_count")), {1})
            mails.cancel()  # out of the next wave's queue run
        self.assertEqual(counts[1], counts[2], f"queue run queries by batch size (2, 5, 25): {counts}")

    def test_temporary_refusal_retried(self):
        """451 for one recipient: that email is retried, the next one of the
        same session goes out at once."""
        (gina, hugo), (gina_mail, hugo_mail) = self.welcome(2, prefix="guest")
        with self.smtp_up() as smtp:
            smtp.rcpt_replies[gina.email] = "451 4.7.1 Greylisted, please try again later"
            self.run_queue(NOW + timedelta(minutes=2))
            self.assertEqual((smtp.received(gina.email), smtp.received(hugo.email)), (0, 1))
            self.assertFalse(hugo_mail.exists())
            self.assertRecordValues(gina_mail, [{
                "state": "outgoing", "behavioral_retry_count": 1,
                "scheduled_date": NOW + timedelta(minutes=3),
            }])
            self.assertIn("451 4.7.1 Greylisted", gina_mail.failure_reason)
            self.assertIn("451 4.7.1 Greylisted", self.traces(gina).state_msg)

            # still greylisted at the second attempt: 5 minutes later
            self.run_queue(NOW + timedelta(minutes=3))
            self.assertRecordValues(gina_mail, [{
                "state": "outgoing", "behavioral_retry_count": 2,
                "scheduled_date": NOW + timedelta(minutes=8),
            }])
            del smtp.rcpt_replies[gina.email]
            self.run_queue(NOW + timedelta(minutes=8))
            self.assertEqual((smtp.received(gina.email), smtp.received(hugo.email)), (1, 1))
        self.assertRecordValues(self.traces(gina), [{
            "state": "sent", "trace_status": "sent", "state_msg": "Delivered after 2 failed attempt(s).",
        }])
        self.assertEqual(self.enrollments(self.welcome_sequence, gina).state, "running")

    def test_connection_lost_midway(self):
        """The server closes the session (421) in the middle of a batch: the
        email refused and the ones after it are all tried again later."""
        partners, mails = self.welcome(3, prefix="batch")
        with self.smtp_up() as smtp:
            smtp.rcpt_replies[partners[1].email] = "421 4.3.2 Service shutting down"
            self.run_queue(NOW + timedelta(minutes=2))
            self.assertEqual([smtp.received(p.email) for p in partners], [1, 0, 0])
            self.assertFalse(mails[0].exists())
            self.assertRecordValues(mails[1:], [{"state": "outgoing", "behavioral_retry_count": 1}] * 2)
            self.assertIn("421 4.3.2", mails[1].failure_reason)
            self.assertIn("SMTPServerDisconnected", mails[2].failure_reason)
            smtp.rcpt_replies.clear()
            self.run_queue(NOW + timedelta(minutes=3))
            self.assertEqual([smtp.received(p.email) for p in partners], [1, 1, 1])

    def test_permanent_refusal_is_a_bounce(self):
        """550 for a recipient: not retried, recorded as a bounce."""
        (ivan,), (mail,) = self.welcome(1, prefix="unknown")
        mailing_trace = mail.mailing_trace_ids
        reply = "550 5.1.1 <unknown0@example.com>: Recipient address rejected: User unknown"
        with self.smtp_up() as smtp:
            smtp.rcpt_replies[ivan.email] = reply
            self.run_queue(NOW + timedelta(minutes=2))
            self.run_queue(NOW + timedelta(hours=1))
            self.assertEqual(smtp.received(ivan.email), 0)
        self.assertFalse(mail.exists() and mail.state == "outgoing", "never retried")
        self.assertRecordValues(mailing_trace, [{"trace_status": "bounce", "failure_type": "mail_bounce"}])
        self.assertIn("Recipient address rejected", mailing_trace.failure_reason)
        trace = self.traces(ivan)
        self.assertRecordValues(trace, [{"state": "failed", "failure_type": "mail_bounce"}])
        self.assertIn("550 5.1.1", trace.state_msg)
        enrollment = self.enrollments(self.welcome_sequence, ivan)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "bounced"}])
        self.assertIn("550 5.1.1", enrollment.state_msg)
        self.assertEqual(ivan.message_bounce, 1)

    def test_backoff_then_failed_for_good(self):
        """Retried after 1, 5, 15, 60 minutes, then every 4 hours, a last time
        24 hours after the first failure; then failed with the reason, the
        enrollment waiting on that step for a retry."""
        (jill,), (mail,) = self.welcome(1, prefix="faraway")
        enrollment = self.enrollments(self.welcome_sequence, jill)
        first_failure = NOW + timedelta(minutes=2)
        at, waits = first_failure, []
        while True:
            self.run_queue(at)
            if mail.state != "outgoing":
                break
            waits.append(int((mail.scheduled_date - at).total_seconds() // 60))
            at = mail.scheduled_date
        self.assertEqual(waits, [1, 5, 15, 60, 240, 240, 240, 240, 240, 159])
        self.assertEqual(at, first_failure + timedelta(hours=24))
        self.assertRecordValues(mail, [{"state": "exception", "failure_type": "mail_smtp"}])
        self.assertIn("Connection refused", mail.failure_reason)
        self.assertEqual(mail.mailing_trace_ids.trace_status, "error")
        trace = self.traces(jill)
        self.assertRecordValues(trace, [{"state": "failed", "failure_type": "mail_smtp"}])
        self.assertIn("Connection refused", trace.state_msg)
        self.assertRecordValues(enrollment, [{
            "state": "failed", "failure_type": "mail_smtp", "step_id": self.first_step.id}])
        self.assertIn("Connection refused", enrollment.state_msg)

        # nothing lost: retrying the enrollment sends the welcome again
        retried = at + timedelta(hours=1)
        with freeze_time(retried):
            enrollment.action_retry()
        self.run_crons(retried)
        self.assertEqual(trace.state, "sent", "the failed trace is reused")
        self.assertEqual(enrollment.step_id, self.first_step._get_next_step())
        with self.smtp_up() as smtp:
            self.run_queue(retried + timedelta(minutes=1))
            self.assertEqual(smtp.received(jill.email), 1)

    def test_retry_limit_is_configurable(self):
        self.env["ir.config_parameter"].set_param("behavioral_email.delivery_retry_hours", "0")
        (kim,), (mail,) = self.welcome(1, prefix="impatient")
        self.run_queue(NOW + timedelta(minutes=2))
        self.assertRecordValues(mail, [{"state": "exception", "failure_type": "mail_smtp"}])
        self.assertRecordValues(self.traces(kim), [{"state": "failed", "failure_type": "mail_smtp"}])

    def test_other_mail_keeps_odoo_behaviour(self):
        """A mail that is not a sequence's fails at once during the outage, as
        in Odoo; the sequence's mail of the same run is retried."""
        (lou,), (welcome,) = self.welcome(1, prefix="neighbour")
        other = self.env["mail.mail"].create({
            "subject": "Invoice", "body_html": "<p>Your invoice</p>", "email_from": "shop@example.com",
            "email_to": "lou.other@example.com", "mail_server_id": self.mail_server.id,
        })
        self.run_queue(NOW + timedelta(minutes=2))
        self.assertRecordValues(other, [{"state": "exception", "behavioral_retry_count": 0, "scheduled_date": False}])
        self.assertIn("Connection refused", other.failure_reason)
        self.assertRecordValues(welcome, [{"state": "outgoing", "behavioral_retry_count": 1}])
        with self.smtp_up() as smtp:
            self.run_queue(NOW + timedelta(minutes=3))
            self.assertEqual(smtp.received(lou.email), 1)
            self.assertEqual(smtp.received("lou.other@example.com"), 0)
        self.assertEqual(other.state, "exception")
