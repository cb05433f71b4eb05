from ast import literal_eval
from datetime import timedelta

from freezegun import freeze_time

from odoo.exceptions import UserError, ValidationError
from odoo.tests.common import users

from .common import NOW, BehavioralCommon


class TestPostPurchaseAndWelcome(BehavioralCommon):

    def test_order_confirmation_starts_post_purchase(self):
        self.start(self.order_sequence)
        order = self.env["sale.order"].create({
            "partner_id": self.bob.id,
            "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW)
        trigger = self.env["behavioral.trigger"].search([("trigger_type", "=", "order_confirmed")])
        self.assertRecordValues(trigger, [{
            "partner_id": self.bob.id, "res_model": "sale.order", "res_id": order.id,
            "occurred_at": NOW, "state": "new",
        }])
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        thanks = self.assertQueued(self.bob, sequence=self.order_sequence)
        self.assertEqual(thanks.subject, f"Thank you for your order {order.name}")
        self.assertEqual(self.enrollments(self.order_sequence, self.bob).trace_ids.subject, thanks.subject)
        self.assertIn("Olive Tree", thanks.body_html)

        steps = self.order_sequence.step_ids.sorted()
        enrollment = self.enrollments(self.order_sequence, self.bob)
        self.assertEqual(enrollment.step_id, steps[1])
        # tips after 3 days, review request 14 days after the order
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3))
        self.assertFalse(self._new_mails)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=2))
        self.assertEqual(self.assertQueued(self.bob).subject, "Getting the most out of your purchase")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=14, minutes=3))
        review = self.assertQueued(self.bob)
        self.assertEqual(review.subject, "How do you like it?")
        self.assertIn("Olive Tree", review.body_html)
        self.assertEqual(enrollment.state, "done")

    def test_backend_quotation_gets_no_post_purchase(self):
        """The shipped post-purchase series thanks shop orders only."""
        self.start(self.order_sequence)
        quotation = self.env["sale.order"].create({
            "partner_id": self.carol.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(quotation, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(self.carol, count=0)
        trigger = self.env["behavioral.trigger"].search([("res_id", "=", quotation.id), ("res_model", "=", "sale.order")])
        self.assertIn("does not match the filter", trigger.state_msg)

    def test_order_confirmed_twice_one_trigger(self):
        self.start(self.order_sequence)
        order = self.env["sale.order"].create({
            "partner_id": self.bob.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW)
        with freeze_time(NOW):
            order._action_cancel()
            order.action_draft()
        self.confirm(order, NOW + timedelta(minutes=5))
        self.assertEqual(self.env["behavioral.trigger"].search_count([("trigger_type", "=", "order_confirmed")]), 1)

    def test_new_contact_gets_welcome_series(self):
        self.start(self.welcome_sequence)
        with freeze_time(NOW):
            dora = self.env["res.partner"].create({"name": "Dora New", "email": "dora@example.com"})
            self.env["res.partner"].create({"name": "No Address"})
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        welcome = self.assertQueued(dora, sequence=self.welcome_sequence)
        self.assertEqual(welcome.subject, "Welcome to Garden Shop")
        self.assertIn("Hi Dora,", welcome.body_html)
        self.assertEqual(len(self._new_mails), 1)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=2))
        self.assertEqual(self.assertQueued(dora).subject, "Our customers' favourites")
        self.assertEqual(self.enrollments(self.welcome_sequence, dora).state, "done")

    def test_contact_gets_email_later(self):
        """A contact created without address enrolls once it gets one."""
        self.start(self.welcome_sequence)
        with freeze_time(NOW):
            eve = self.env["res.partner"].create({"name": "Eve"})
            eve.email = "eve@example.com"
            eve.email = "eve.other@example.com"
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(eve, count=1)

    def test_old_contact_given_an_email_is_not_welcomed(self):
        self.start(self.welcome_sequence)
        with self.mock_datetime_and_now(NOW - timedelta(days=400)):
            old = self.env["res.partner"].create({"name": "Long-standing customer"})
        with freeze_time(NOW):
            old.email = "longstanding@example.com"
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(old, count=0)
        self.assertFalse(self.env["behavioral.trigger"].search([("partner_id", "=", old.id)]))

    def test_internal_user_gets_no_welcome(self):
        self.start(self.welcome_sequence)
        with freeze_time(NOW):
            user = self.env["res.users"].create({
                "name": "New Employee", "login": "employee2", "email": "employee2@example.com",
                "groups_id": [(6, 0, self.env.ref("base.group_user").ids)],
            })
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(user.partner_id, count=0)

    def test_draft_sequence_emails_nobody(self):
        """Installing ships sequences in draft: activity alone sends nothing."""
        self.assertEqual(
            {self.cart_sequence.state, self.order_sequence.state, self.welcome_sequence.state}, {"draft"})
        self.make_cart(self.alice)
        with freeze_time(NOW):
            self.env["res.partner"].create({"name": "Fred", "email": "fred@example.com"})
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1))
        self.assertFalse(self._new_mails)

    def test_paused_sequence_resumes(self):
        self.start(self.welcome_sequence)
        with freeze_time(NOW):
            gina = self.env["res.partner"].create({"name": "Gina", "email": "gina@example.com"})
            self.env["behavioral.trigger"]._cron_enroll()
        self.welcome_sequence.action_pause()
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1))
        self.assertFalse(self._new_mails)
        self.start(self.welcome_sequence, at=NOW + timedelta(hours=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2))
        self.assertQueued(gina)


class TestShippedSequences(BehavioralCommon):

    def test_every_shipped_sequence_is_a_draft_that_starts_as_it_is(self):
        """Installing emails nobody; each shipped sequence has emails whose
        dynamic blocks are intact, and starts without a change."""
        data = self.env["ir.model.data"].search([
            ("module", "=", "behavioral_email"), ("model", "=", "behavioral.sequence")])
        self.assertLessEqual(
            {"sequence_cart", "sequence_order", "sequence_welcome", "sequence_invoice_paid", "sequence_trial_started"},
            set(data.mapped("name")))
        sequences = self.env["behavioral.sequence"].browse(data.mapped("res_id"))
        self.assertEqual(set(sequences.mapped("state")), {"draft"})
        for sequence in sequences:
            with self.subTest(sequence=sequence.name):
                emails = sequence.step_ids.filtered(lambda s: s.step_type == "email")
                self.assertTrue(emails)
                for step in emails:
                    self.assertFalse(step._get_email_content_error(), step.display_name)
                sequence.action_start()
                self.assertEqual(sequence.state, "running")


class TestSequenceForm(BehavioralCommon):

    @users("marketer")
    def test_start_refused_without_steps(self):
        sequence = self.env["behavioral.sequence"].create({"name": "Empty", "trigger_type": "partner_created"})
        with self.assertRaisesRegex(UserError, "has no step"):
            sequence.action_start()
        self.assertEqual(sequence.state, "draft")

    @users("marketer")
    def test_start_refused_with_empty_step(self):
        sequence = self.env["behavioral.sequence"].create({
            "name": "No content", "trigger_type": "partner_created",
            "step_ids": [(0, 0, {"subject": "Hello", "delay_value": 0})],
        })
        with self.assertRaisesRegex(UserError, "has no content"):
            sequence.action_start()
        sequence.step_ids.body_html = "<p>Hello <t t-out='object.partner_id.name'/></p>"
        sequence.action_start()
        self.assertEqual(sequence.state, "running")

    @users("marketer")
    def test_marketer_builds_sequence(self):
        """Steps are created inline with their content; each gets its own
        technical mailing, hidden from the Email Marketing app."""
        sequence = self.env["behavioral.sequence"].create({
            "name": "VIP follow-up", "trigger_type": "order_confirmed",
            "step_ids": [
                (0, 0, {"subject": "Thanks", "body_html": "<p>Thanks</p>", "delay_value": 1, "delay_unit": "hours"}),
                (0, 0, {"subject": "Tips", "body_html": "<p>Tips</p>", "delay_value": 2, "delay_unit": "weeks"}),
            ],
        })
        self.assertEqual(sequence.goal, "none")
        self.assertTrue(sequence.campaign_id)
        mailings = sequence.step_ids.mailing_id
        self.assertEqual(len(mailings), 2)
        self.assertEqual(mailings.mapped("subject"), ["Thanks", "Tips"])
        self.assertTrue(all(mailings.mapped("use_in_behavioral")))
        self.assertEqual(mailings.campaign_id, sequence.campaign_id)
        self.assertEqual(sequence.step_ids[1]._get_delay(), timedelta(weeks=2))
        action = self.env["ir.actions.act_window"]._for_xml_id("mass_mailing.mailing_mailing_action_mail")
        visible = self.env["mailing.mailing"].search(literal_eval(action["domain"]))
        self.assertFalse(visible & mailings)
        copy = sequence.copy()
        self.assertEqual(copy.step_ids.mapped("subject"), ["Thanks", "Tips"])
        self.assertFalse(copy.step_ids.mailing_id & mailings)

    def test_archiving_pauses_and_deleting_cleans_up(self):
        self.start(self.welcome_sequence)
        with freeze_time(NOW):
            ivy = self.env["res.partner"].create({"name": "Ivy", "email": "ivy@example.com"})
            self.env["behavioral.trigger"]._cron_enroll()
        with self.assertRaisesRegex(UserError, "Pause a sequence before deleting it"):
            self.welcome_sequence.unlink()
        self.welcome_sequence.action_archive()
        self.assertEqual(self.welcome_sequence.state, "paused")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1))
        self.assertQueued(ivy, count=0)
        # its enrollments wait on its steps: stop them, then it can go
        with self.assertRaisesRegex(UserError, "waiting for this step"):
            self.welcome_sequence.unlink()
        self.enrollments(self.welcome_sequence).action_stop()
        # its second email starts another shipped sequence when opened
        with self.assertRaisesRegex(UserError, "starts the sequence “Read the favourites, not ordered”"):
            self.welcome_sequence.unlink()
        self.env.ref("behavioral_email.sequence_email_opened").unlink()
        mailings = self.welcome_sequence.step_ids.mailing_id
        self.welcome_sequence.unlink()
        self.assertFalse(mailings.exists(), "the steps' unused mailings go with them")

    def test_invalid_filters_refused(self):
        with self.assertRaises(ValidationError):
            self.env["behavioral.sequence"].create({
                "name": "Bad", "trigger_type": "cart_abandoned", "filter_domain": "[('nope', '=', 1)]"})

    def test_filters_limit_enrollment(self):
        self.cart_sequence.write({
            "filter_domain": "[('amount_total', '>', 50)]",
            "partner_domain": "[('email', 'not like', 'carol')]",
        })
        self.start(self.cart_sequence)
        self.make_cart(self.alice, lines=[(self.pot, 1)])  # 12.50: below the filter
        self.make_cart(self.bob)
        self.make_cart(self.carol)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.alice, count=0)
        self.assertQueued(self.bob, count=1)
        self.assertQueued(self.carol, count=0)

    def test_step_condition_skips(self):
        """A step whose condition fails is skipped and the series goes on."""
        self.start(self.cart_sequence)
        step1 = self.cart_sequence.step_ids.sorted()[0]
        step1.condition_domain = "[('amount_total', '>', 1000)]"
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertFalse(self._new_mails)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertRecordValues(enrollment.trace_ids, [{"state": "skipped", "step_id": step1.id}])
        self.assertEqual(enrollment.state, "running")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=3))
        self.assertEqual(self.assertQueued(self.alice).subject, "Still thinking it over?")


class TestRetention(BehavioralCommon):

    def test_old_triggers_are_deleted(self):
        self.start(self.welcome_sequence)
        with freeze_time(NOW - timedelta(days=200)):
            old = self.env["res.partner"].create({"name": "Old", "email": "old@example.com"})
            self.env["behavioral.trigger"]._cron_enroll()
        with freeze_time(NOW):
            recent = self.env["res.partner"].create({"name": "Recent", "email": "recent@example.com"})
            self.env["behavioral.trigger"]._cron_gc()
        Trigger = self.env["behavioral.trigger"]
        self.assertFalse(Trigger.search([("partner_id", "=", old.id)]))
        # a new trigger is never deleted, processed or not
        self.assertEqual(Trigger.search([("partner_id", "=", recent.id)]).state, "new")
        enrollment = self.enrollments(self.welcome_sequence, old)
        self.assertTrue(enrollment)
        self.assertFalse(enrollment.trigger_id)
