from datetime import timedelta
from unittest.mock import patch

from freezegun import freeze_time
from psycopg2 import IntegrityError

from odoo.addons.behavioral_email.models.behavioral_trigger import BehavioralTrigger
from odoo.exceptions import UserError
from odoo.tools import mute_logger

from .common import NOW, BehavioralCommon


class TestIdempotency(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start(cls, cls.cart_sequence)

    def test_crons_twice_queue_nothing_twice(self):
        self.make_cart(self.alice)
        self.make_cart(self.bob)
        with self.mock_queue():
            for _run in range(2):
                self.run_crons(NOW + timedelta(hours=3))
            # and once more a minute later, as a second cron tick would
            self.run_crons(NOW + timedelta(hours=3, minutes=1))
        self.assertQueued(self.alice, count=1)
        self.assertQueued(self.bob, count=1)
        self.assertEqual(self.env["behavioral.trigger"].search_count([("trigger_type", "=", "cart_abandoned")]), 2)
        self.assertEqual(len(self.enrollments(self.cart_sequence)), 2)

    def test_overlapping_workers_never_send_twice(self):
        """A second worker that read an enrollment before the first one
        committed cannot queue the same step again: the database refuses the
        second trace, and its whole batch (mail included) rolls back."""
        self.make_cart(self.alice)
        with freeze_time(NOW + timedelta(hours=3)):
            self.env["behavioral.trigger"]._cron_detect()
            self.env["behavioral.trigger"]._cron_enroll()
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        step1 = enrollment.step_id
        stale = {"step_id": step1.id, "next_due": enrollment.next_due}
        with self.mock_queue(), freeze_time(NOW + timedelta(hours=3)):
            enrollment._advance()  # worker A
            self.env.flush_all()
            # worker B still sees the enrollment as it was before A's commit
            self.env.cr.execute(
                "UPDATE behavioral_enrollment SET step_id = %s, next_due = %s WHERE id = %s",
                (stale["step_id"], stale["next_due"], enrollment.id))
            self.env.invalidate_all()
            with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"), self.env.cr.savepoint():
                enrollment._advance()  # worker B
        self.env.invalidate_all()
        mails = self.env["mail.mail"].search([("model", "=", "behavioral.enrollment"), ("res_id", "=", enrollment.id)])
        self.assertEqual(len(mails), 1)
        self.assertEqual(len(enrollment.trace_ids), 1)

    def test_enrollment_refused_twice_by_database(self):
        self.make_cart(self.alice)
        self.run_crons(NOW + timedelta(hours=3), advance=False)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        with self.assertRaises(IntegrityError), mute_logger("odoo.sql_db"), self.env.cr.savepoint():
            self.env["behavioral.enrollment"].create({
                "sequence_id": self.cart_sequence.id,
                "partner_id": self.alice.id,
                "res_model": "sale.order",
                "res_id": enrollment.res_id,
                "dedupe_key": enrollment.dedupe_key,
            })


class TestFailures(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start(cls, cls.cart_sequence)
        cls.fragile = cls.env["behavioral.sequence"].create({
            "name": "Fragile welcome", "trigger_type": "partner_created",
            "step_ids": [(0, 0, {
                "subject": "Hello {{ object.partner_id.name }}",
                # divides by zero for three-letter names only
                "body_html": "<p>Score <t t-out='10 // (len(object.partner_id.name) - 3)'/></p>",
                "delay_value": 0,
            })],
        })
        cls.start(cls, cls.fragile)

    def test_broken_step_fails_alone(self):
        """One record that does not render fails its own trace; the rest of the
        batch, the same step included, still goes."""
        self.make_cart(self.alice)
        with freeze_time(NOW + timedelta(hours=2)):
            dan = self.env["res.partner"].create({"name": "Dan", "email": "dan@example.com"})
            eva = self.env["res.partner"].create({"name": "Evangeline", "email": "eva@example.com"})
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.alice, sequence=self.cart_sequence)
        self.assertIn("Score 1", self.assertQueued(eva, sequence=self.fragile).body_html)
        self.assertQueued(dan, count=0)
        enrollment = self.enrollments(self.fragile, dan)
        self.assertEqual(enrollment.state, "failed")
        trace = enrollment.trace_ids
        self.assertRecordValues(trace, [{"state": "failed", "failure_type": "render", "mail_mail_id": False}])
        self.assertIn("could not be rendered", trace.state_msg)
        self.assertIn("ZeroDivisionError", enrollment.state_msg)

        # the marketer fixes the template and retries: same trace, now sent
        self.fragile.step_ids.body_html = "<p>Hello <t t-out='object.partner_id.name'/></p>"
        with freeze_time(NOW + timedelta(hours=4)):
            enrollment.action_retry()
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=4))
        mail = self.assertQueued(dan, sequence=self.fragile)
        self.assertIn("Hello Dan", mail.body_html)
        self.assertEqual(enrollment.trace_ids, trace)
        self.assertRecordValues(trace, [{"state": "sent", "failure_type": False, "mail_mail_id": mail.id}])

    def test_template_broken_for_everyone(self):
        # broken behind the editor's back (saving it is refused): e.g. a field
        # its module took away when uninstalled
        self.fragile.step_ids.mailing_id.body_html = "<p><t t-out='object.no_such_field'/></p>"
        self.make_cart(self.bob)
        with freeze_time(NOW + timedelta(hours=2)):
            zoe = self.env["res.partner"].create({"name": "Zoe Zed", "email": "zoe@example.com"})
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.bob, sequence=self.cart_sequence)
        self.assertQueued(zoe, count=0)
        self.assertEqual(self.enrollments(self.fragile, zoe).trace_ids.failure_type, "render")

    def test_capture_failure_never_breaks_the_shop(self):
        """The shop's own writes go through even when capture breaks."""
        self.start(self.welcome_sequence)
        with patch.object(BehavioralTrigger, "_insert_triggers", side_effect=RuntimeError("capture down")), \
                mute_logger("odoo.addons.behavioral_email.models.res_partner",
                            "odoo.addons.behavioral_email.models.sale_order"):
            partner = self.env["res.partner"].create({"name": "Hal", "email": "hal@example.com"})
            order = self.env["sale.order"].create({
                "partner_id": partner.id,
                "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
            })
            order.action_confirm()
        self.assertEqual(order.state, "sale")
        self.assertFalse(self.env["behavioral.trigger"].search([("partner_id", "=", partner.id)]))

    def test_unexpected_error_fails_one_enrollment(self):
        """An error outside the step's own guard (here: the goal check of one
        record) fails that enrollment alone; the batch still goes."""
        self.make_cart(self.alice)
        self.make_cart(self.bob)
        self.run_crons(NOW + timedelta(hours=3), advance=False)
        alice_enrollment = self.enrollments(self.cart_sequence, self.alice)
        Enrollment = type(self.env["behavioral.enrollment"])
        original = Enrollment._get_goal_reached

        def goal_check(model, goal, rows):
            if any(row[0] == alice_enrollment.id for row in rows):
                raise RuntimeError("goal check exploded")
            return original(model, goal, rows)

        with self.mock_queue(), patch.object(Enrollment, "_get_goal_reached", goal_check), \
                mute_logger("odoo.addons.behavioral_email.models.behavioral_enrollment"), \
                freeze_time(NOW + timedelta(hours=3)):
            self.env["behavioral.enrollment"]._cron_advance()
        self.assertQueued(self.bob, count=1)
        self.assertQueued(self.alice, count=0)
        self.assertRecordValues(alice_enrollment, [{"state": "failed"}])
        self.assertIn("goal check exploded", alice_enrollment.state_msg)

    def test_step_with_waiting_enrollments_cannot_be_deleted(self):
        self.make_cart(self.alice)
        self.run_crons(NOW + timedelta(hours=3), advance=False)
        step = self.enrollments(self.cart_sequence, self.alice).step_id
        with self.assertRaisesRegex(UserError, "waiting for this step"):
            step.unlink()
