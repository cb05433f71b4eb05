"""behavioral_email_queue_job: the crons' batches as OCA queue_job jobs.

Skipped when the bridge is not installed in the test database
(scripts/test.sh installs it whenever queue_job is importable). Jobs are
checked with queue_job's own test helpers (``trap_jobs``) and performed
the way its controller does; the parallel run is
``scripts/concurrency_check.py --queue-job``.
"""
import importlib.util
import os
import subprocess
import sys
import unittest
from pathlib import Path
from unittest import mock

import pytest
from freezegun import freeze_time

from .common import NOW, BehavioralCommon

HAS_QUEUE_JOB = importlib.util.find_spec("odoo.addons.queue_job") is not None
if HAS_QUEUE_JOB:
    from odoo.addons.queue_job.job import Job
    from odoo.addons.queue_job.tests.common import trap_jobs

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "root.behavioral_email"


def channels(capacity):
    """The job runner's server-wide channels, as an operator configures them."""
    return mock.patch.dict(os.environ, {"ODOO_QUEUE_JOB_CHANNELS": f"root:4,{CHANNEL}:{capacity}"})


class TestQueueJob(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if not cls.env["ir.module.module"].search_count([
            ("name", "=", "behavioral_email_queue_job"), ("state", "=", "installed"),
        ]):
            raise unittest.SkipTest("behavioral_email_queue_job is not installed in this database")
        cls.Trigger = cls.env["behavioral.trigger"]
        cls.Enrollment = cls.env["behavioral.enrollment"]
        cls.sequence = cls.env["behavioral.sequence"].create({
            "name": "Hello", "trigger_type": "partner_created", "reentry": "partner",
            "email_from": "shop@example.com",
            "step_ids": [(0, 0, {"subject": "Hello {{ object.partner_id.name }}",
                                 "body_html": "<p>Hello <t t-out='object.partner_id.name'/></p>",
                                 "delay_value": 0})],
        })
        cls.start(cls, cls.sequence)
        params = cls.env["ir.config_parameter"]
        params.set_param("behavioral_email.advance_batch_size", 2)
        params.set_param("behavioral_email.enroll_batch_size", 2)

    def _contacts(self, count):
        with freeze_time(NOW):
            return self.env["res.partner"].create([
                {"name": f"Contact {i}", "email": f"contact{i}@example.com"} for i in range(count)])

    def _enrolled(self, count):
        contacts = self._contacts(count)
        with freeze_time(NOW):
            self.Trigger._cron_enroll()  # in a test transaction: inline
        self.assertEqual(len(self.enrollments(self.sequence)), count)
        return contacts

    def _perform_trapped(self, trap):
        """Perform trapped jobs, and the jobs they queue, until none is left;
        return how many were performed."""
        performed = 0
        while trap.enqueued_jobs:
            performed += len(trap.enqueued_jobs)
            trap.perform_enqueued_jobs()
        return performed

    def _perform_stored(self):
        """Perform the stored pending jobs as queue_job's controller does
        (started, perform, done), and those they queue; return how many."""
        performed = 0
        while True:
            pending = self.env["queue.job"].search([("state", "=", "pending"), ("channel", "=", CHANNEL)])
            if not pending:
                return performed
            for record in pending:
                job = Job.load(self.env, record.uuid)
                job.set_started()
                job.store()
                job.perform()
                job.set_done()
                job.store()
                performed += 1

    def _assert_sent_once(self, contacts):
        for contact in contacts:
            self.assertQueued(contact, 1, self.sequence)
        traces = self.env["behavioral.trace"].search([("enrollment_id.sequence_id", "=", self.sequence.id)])
        self.assertEqual(len(traces), len(contacts))
        self.assertEqual(set(traces.mapped("state")), {"sent"})
        self.assertEqual(set(self.enrollments(self.sequence).mapped("state")), {"done"})

    def test_crons_run_inline_in_a_transaction_never_committed(self):
        """Jobs stored in a test transaction would never reach a runner: the
        crons do the work themselves, as without queue_job."""
        contacts = self._enrolled(3)
        with self.mock_queue(), freeze_time(NOW), trap_jobs() as trap:
            self.Enrollment._cron_advance()
        trap.assert_jobs_count(0)
        self._assert_sent_once(contacts)

    def test_advance_jobs_identity_channel_count(self):
        contacts = self._enrolled(7)  # 4 batches of 2
        with self.mock_queue(), freeze_time(NOW), trap_jobs() as trap:
            with channels(1):
                self.assertEqual(self.Enrollment._enqueue_advance_jobs(), 2)
            # capacity 1: two slots, one running and one ready
            trap.assert_jobs_count(2, only=self.Enrollment._job_advance_batch)
            for slot in (0, 1):
                trap.assert_enqueued_job(
                    self.Enrollment._job_advance_batch, args=(slot,),
                    properties={"identity_key": f"behavioral_email:advance:{slot}"})
            self.assertEqual({job.channel for job in trap.enqueued_jobs}, {CHANNEL})
            # each job runs one batch and queues the next one of its slot while
            # its batch was full: 2 + 2 full, then 1, then nothing left
            self.assertEqual(self._perform_trapped(trap), 5)
        self._assert_sent_once(contacts)
        self.assertEqual(
            [call.args for call in trap.calls], [(0,), (1,), (0,), (1,), (0,)],
            "slot 1 stops after its partial batch, slot 0 after finding nothing")

    def test_advance_slots_capped_by_capacity(self):
        self._enrolled(7)
        with freeze_time(NOW), trap_jobs() as trap, channels(3):
            # 4 batches due, capacity 3 allows 6 slots: one per batch
            self.assertEqual(self.Enrollment._enqueue_advance_jobs(), 4)
        trap.assert_jobs_count(4)
        with freeze_time(NOW), trap_jobs() as trap:
            self.enrollments(self.sequence).action_stop()
            self.assertEqual(self.Enrollment._enqueue_advance_jobs(), 0, "nothing due, no job")
        trap.assert_jobs_count(0)

    def test_enqueue_twice_adds_no_duplicate(self):
        contacts = self._enrolled(7)
        with self.mock_queue(), freeze_time(NOW), channels(1):
            self.Enrollment._enqueue_advance_jobs()
            self.Enrollment._enqueue_advance_jobs()
            jobs = self.env["queue.job"].search([("channel", "=", CHANNEL)])
            self.assertEqual(sorted(jobs.mapped("identity_key")),
                             ["behavioral_email:advance:0", "behavioral_email:advance:1"])
            self.assertEqual(set(jobs.mapped("state")), {"pending"})
            self.assertEqual(self._perform_stored(), 5)
            # all sent: another run queues nothing
            self.assertEqual(self.Enrollment._enqueue_advance_jobs(), 0)
        self._assert_sent_once(contacts)
        jobs = self.env["queue.job"].search([("channel", "=", CHANNEL)])
        self.assertEqual(len(jobs), 5)
        self.assertEqual(set(jobs.mapped("state")), {"done"})

    def test_stalled_jobs_make_the_crons_work_themselves(self):
        """Jobs nobody runs (no job runner loaded) must not stop the emails:
        after 15 minutes the crons see them waiting and work inline."""
        from odoo.addons.behavioral_email_queue_job.tools import jobs_stalled
        self._enrolled(3)
        with freeze_time(NOW), channels(1):
            self.Enrollment._enqueue_advance_jobs()
            self.assertFalse(jobs_stalled(self.env))
        with freeze_time(self.later(minutes=14)):
            self.assertFalse(jobs_stalled(self.env))
        with freeze_time(self.later(minutes=16)), self.assertLogs(
                "odoo.addons.behavioral_email_queue_job.tools.batch_job", "WARNING") as logs:
            self.assertTrue(jobs_stalled(self.env))
        self.assertIn("is the job runner running", logs.output[0])

    def test_enroll_jobs(self):
        contacts = self._contacts(5)
        new = self.Trigger.search([("state", "=", "new"), ("partner_id", "in", contacts.ids)])
        self.assertEqual(len(new), 5)
        with freeze_time(NOW), trap_jobs() as trap:
            with channels(1):
                self.assertEqual(self.Trigger._enqueue_enroll_jobs(), 2)
            for slot in (0, 1):
                trap.assert_enqueued_job(
                    self.Trigger._job_enroll_batch, args=(slot,),
                    properties={"identity_key": f"behavioral_email:enroll:{slot}"})
            self.assertEqual({job.channel for job in trap.enqueued_jobs}, {CHANNEL})
            self.assertEqual(self._perform_trapped(trap), 4)  # 2 + 2, then 1, stop
        self.assertEqual(set(new.mapped("state")), {"done"})
        self.assertEqual(self.enrollments(self.sequence).partner_id, contacts)

    def test_detect_jobs(self):
        self.start(self.cart_sequence)
        cart = self.make_cart(self.alice)
        idle = self.later(hours=3)
        with freeze_time(idle), trap_jobs() as trap:
            self.assertEqual(self.Trigger._enqueue_detect_jobs(), 1, "one job per detected kind")
            trap.assert_enqueued_job(
                self.Trigger._job_detect, args=("cart_abandoned",),
                properties={"identity_key": "behavioral_email:detect:cart_abandoned"})
            self.assertEqual({job.channel for job in trap.enqueued_jobs}, {CHANNEL})
            trap.perform_enqueued_jobs()
            # a second detection finds the same idle spell: nothing new
            self.Trigger._enqueue_detect_jobs()
            trap.perform_enqueued_jobs()
        triggers = self.Trigger.search([("trigger_type", "=", "cart_abandoned"), ("res_id", "=", cart.id)])
        self.assertEqual(len(triggers), 1)
        self.assertEqual(triggers.state, "new")


@pytest.mark.skipif(not HAS_QUEUE_JOB, reason="OCA queue_job is not installed (see requirements.txt)")
def test_parallel_job_workers_advance_each_enrollment_once():
    """Batches as jobs, performed by three processes, one killed mid-job."""
    db = f"behavioral_email_queue_job_{os.getpid()}"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "concurrency_check.py"), "--queue-job",
         "--db", db, "--contacts", "300", "--workers", "3", "--batch", "20"],
        capture_output=True, text=True, timeout=900, check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "OK: every enrollment advanced exactly once, through jobs" in result.stdout
    assert "traces 300 (distinct enrollment/step: 300), mails 300, enrollments done 300" in result.stdout
    assert "killed in the middle of job" in result.stdout, result.stdout
    shares = [line for line in result.stdout.splitlines()
              if line.strip().startswith("worker") and "performed 0 " not in line and "killed" not in line]
    assert len(shares) > 1, result.stdout
