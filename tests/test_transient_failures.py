"""Nothing lost: a transient failure is never a record's fault.

The races themselves are reproduced with real processes in
test_concurrency.py; here the classification and the bookkeeping are checked
on real PostgreSQL errors, and the recovery tools a user has when something
did fail.
"""
from datetime import timedelta
from unittest.mock import patch

from freezegun import freeze_time
from psycopg2 import IntegrityError, errors

from odoo.addons.behavioral_email.models.steps.email import BehavioralSequenceStep
from odoo.addons.behavioral_email.tools import is_concurrency_error
from odoo.tools import mute_logger

from .common import NOW, BehavioralCommon


class TestTransientFailures(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start(cls, cls.cart_sequence)

    def _duplicate_link_code(self):
        """Provoke the real error two workers meet when they draw the same
        short link code: a unique violation on link_tracker_code."""
        tracker = self.env["link.tracker"].create({"url": "https://shop.example.com/a", "title": "a"})
        other = self.env["link.tracker"].create({"url": "https://shop.example.com/b", "title": "b"})
        self.env.flush_all()
        try:
            with mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                self.env.cr.execute(
                    "INSERT INTO link_tracker_code (code, link_id) VALUES (%s, %s)",
                    (tracker.code, other.id))
        except IntegrityError as exc:
            return exc
        self.fail("the duplicate code was accepted")

    def test_shared_row_race_is_transient_record_constraint_is_not(self):
        self.assertTrue(is_concurrency_error(self._duplicate_link_code()))
        # a unique violation on the addon's own records is a real conflict
        self.make_cart(self.alice)
        self.run_crons(NOW + timedelta(hours=3), advance=False)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        with self.assertRaises(IntegrityError) as caught, mute_logger("odoo.sql_db"), self.env.cr.savepoint():
            self.env["behavioral.enrollment"].create({
                "sequence_id": self.cart_sequence.id, "partner_id": self.alice.id,
                "res_model": "sale.order", "res_id": enrollment.res_id, "dedupe_key": enrollment.dedupe_key,
            })
        self.assertIsInstance(caught.exception, errors.UniqueViolation)
        self.assertFalse(is_concurrency_error(caught.exception))

    def test_transient_conflict_leaves_enrollments_untouched(self):
        """A batch that meets another worker's short link code is rolled back
        whole and left for a retry: no enrollment fails, no trace is kept."""
        self.make_cart(self.alice)
        self.make_cart(self.bob)
        self.run_crons(NOW + timedelta(hours=3), advance=False)
        conflict = self._duplicate_link_code()

        def collide(step, vals_list):
            raise conflict

        with self.mock_queue(), freeze_time(NOW + timedelta(hours=3)), \
                patch.object(BehavioralSequenceStep, "_get_tracked_links", collide), \
                self.assertRaises(IntegrityError):
            # under tests nothing may commit, so the retry in a new transaction
            # is left to the caller: the error comes out instead of a failure
            self.env["behavioral.enrollment"]._cron_advance()
        self.env.invalidate_all()
        enrollments = self.enrollments(self.cart_sequence)
        self.assertEqual(set(enrollments.mapped("state")), {"running"})
        self.assertFalse(enrollments.trace_ids)
        # the next run sends them, once each
        with self.mock_queue(), freeze_time(NOW + timedelta(hours=3, minutes=1)):
            self.env["behavioral.enrollment"]._cron_advance()
        self.assertQueued(self.alice, count=1)
        self.assertQueued(self.bob, count=1)

    def test_step_failing_for_one_enrollment_fails_only_that_one(self):
        """When a step fails for its whole group, it is run again for each
        enrollment alone: only the one that fails alone is failed."""
        self.make_cart(self.alice)
        self.make_cart(self.bob)
        self.make_cart(self.carol)
        self.run_crons(NOW + timedelta(hours=3), advance=False)
        alice_enrollment = self.enrollments(self.cart_sequence, self.alice)
        original = BehavioralSequenceStep._send_emails

        def fragile(step, enrollments):
            if alice_enrollment in enrollments:
                raise RuntimeError("cannot send to this one")
            return original(step, enrollments)

        with self.mock_queue(), freeze_time(NOW + timedelta(hours=3)), \
                patch.object(BehavioralSequenceStep, "_send_emails", fragile), \
                mute_logger("odoo.addons.behavioral_email.models.behavioral_sequence_step"):
            self.env["behavioral.enrollment"]._cron_advance()
        self.assertQueued(self.bob, count=1)
        self.assertQueued(self.carol, count=1)
        self.assertQueued(self.alice, count=0)
        self.assertRecordValues(alice_enrollment, [{"state": "failed", "failure_type": "unknown"}])
        self.assertIn("cannot send to this one", alice_enrollment.state_msg)
        self.assertRecordValues(alice_enrollment.trace_ids, [{"state": "failed", "failure_type": "unknown"}])

    def test_failed_work_is_visible_and_recoverable(self):
        self.make_cart(self.alice)
        self.make_cart(self.bob)
        self.run_crons(NOW + timedelta(hours=3), advance=False)

        def broken(step, enrollments):
            raise RuntimeError("template service down")

        with self.mock_queue(), freeze_time(NOW + timedelta(hours=3)), \
                patch.object(BehavioralSequenceStep, "_send_emails", broken), \
                mute_logger("odoo.addons.behavioral_email.models.behavioral_sequence_step"):
            self.env["behavioral.enrollment"]._cron_advance()
        self.assertEqual(self.cart_sequence.failed_count, 2)
        action = self.cart_sequence.action_view_failed()
        self.assertEqual(self.env["behavioral.enrollment"].search(action["domain"]),
                         self.enrollments(self.cart_sequence))
        self.assertEqual(action["context"].get("search_default_group_by_failure_type"), 1)
        groups = self.env["behavioral.enrollment"]._read_group(action["domain"], ["failure_type"], ["__count"])
        self.assertEqual(groups, [("unknown", 2)])

        with freeze_time(NOW + timedelta(hours=4)):
            self.cart_sequence.action_retry_failed()
        self.cart_sequence.invalidate_recordset(["failed_count"])
        self.assertEqual(self.cart_sequence.failed_count, 0)
        with self.mock_queue(), freeze_time(NOW + timedelta(hours=4)):
            self.env["behavioral.enrollment"]._cron_advance()
        self.assertQueued(self.alice, count=1)
        self.assertQueued(self.bob, count=1)
        # still one trace per (enrollment, step): the failed one was reused
        enrollments = self.enrollments(self.cart_sequence)
        self.assertEqual(enrollments.trace_ids.mapped("state"), ["sent", "sent"])
        self.assertEqual(set(enrollments.mapped("step_id.sequence")), {20})
