from datetime import timedelta

from freezegun import freeze_time

from odoo.tests.common import users

from .common import NOW, BehavioralCommon


class TestCartRecovery(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start(cls, cls.cart_sequence)
        cls.step1, cls.step2, cls.step3 = cls.cart_sequence.step_ids.sorted()

    def test_abandoned_cart_series(self):
        """A cart left by a customer gets email 1 with its lines and a restore
        link at abandonment, then email 2 a day later."""
        cart = self.make_cart(self.alice)
        # not idle long enough yet (threshold: the website's 2 hours)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=59))
        self.assertFalse(self._new_mails)
        self.assertFalse(self.env["behavioral.trigger"].search([("res_id", "=", cart.id), ("res_model", "=", "sale.order")]))

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=5))
        trigger = self.env["behavioral.trigger"].search([
            ("trigger_type", "=", "cart_abandoned"), ("res_id", "=", cart.id)])
        self.assertRecordValues(trigger, [{
            "partner_id": self.alice.id, "state": "done",
            # the time it became abandoned, not the time the cron noticed
            "occurred_at": NOW + timedelta(hours=2),
        }])
        mail = self.assertQueued(self.alice)
        self.assertEqual(mail.state, "outgoing")
        self.assertEqual(mail.subject, "You left something in your cart")
        self.assertEqual(mail.mailing_id, self.step1.mailing_id)
        self.assertIn("Hi Alice,", mail.body_html)
        for product in (self.pot, self.tree):
            self.assertIn(product.display_name, mail.body_html)
            self.assertIn(f"/web/image/product.product/{product.id}/image_128", mail.body_html)
        self.assertIn("Quantity: 2", mail.body_html)
        self.assertIn("105.00", mail.body_html)  # 2 x 12.50 + 80.00
        self.assertIn("/unsubscribe_from_list", mail.body_html)
        # the restore link goes through the link tracker to this cart
        tracker = self.env["link.tracker"].search([
            ("url", "like", f"access_token={cart.access_token}"),
            ("mass_mailing_id", "=", self.step1.mailing_id.id),
        ])
        self.assertEqual(len(tracker), 1)
        self.assertIn("/shop/cart?", tracker.url)
        self.assertIn("revive=merge", tracker.url)
        self.assertIn(tracker.short_url, mail.body_html)
        self.assertEqual(tracker.campaign_id, self.cart_sequence.campaign_id)
        # titled from the link's label: no HTTP request to the shop from the cron
        self.assertEqual(tracker.title, "Return to my cart")
        # mass_mailing's trace: opens and clicks will be counted on it
        self.assertRecordValues(mail.mailing_trace_ids, [{
            "email": "alice@example.com", "model": "behavioral.enrollment", "trace_status": "outgoing",
        }])
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertRecordValues(enrollment, [{
            "state": "running", "order_id": cart.id, "step_id": self.step2.id,
            "next_due": NOW + timedelta(hours=2, minutes=5) + timedelta(days=1),
        }])
        self.assertRecordValues(enrollment.trace_ids, [{
            "step_id": self.step1.id, "state": "sent", "mail_mail_id": mail.id, "mail_mail_id_int": mail.id,
        }])

        # sending it: List-Unsubscribe headers (RFC 8058) and a personal unsubscribe link
        with self.mock_mail_gateway():
            mail.send()
        self.assertEqual(len(self._mails), 1)
        sent = self._mails[0]
        self.assertEqual(sent["email_to"], ['"Alice Customer" <alice@example.com>'])
        self.assertIn("unsubscribe_oneclick", sent["headers"]["List-Unsubscribe"])
        self.assertEqual(sent["headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
        self.assertEqual(sent["headers"]["X-Odoo-Behavioral-Sequence"], str(self.cart_sequence.id))
        self.assertIn(f"/mailing/{self.step1.mailing_id.id}/confirm_unsubscribe", sent["body"])
        self.assertIn("/mail/track/", sent["body"])  # open tracking pixel

        # a day later, not yet: the delay counts from when email 1 actually went
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=2))
        self.assertFalse(self._new_mails)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=2, minutes=5))
        mail2 = self.assertQueued(self.alice)
        self.assertEqual(mail2.subject, "Still thinking it over?")
        self.assertIn("Olive Tree", mail2.body_html)
        self.assertEqual(enrollment.step_id, self.step3)

        # email 3 two days after email 2, then the enrollment is complete
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, hours=2, minutes=5))
        self.assertEqual(self.assertQueued(self.alice).subject, "Last reminder: your cart")
        self.assertRecordValues(enrollment, [{"state": "done", "step_id": False, "next_due": False}])
        self.assertEqual(enrollment.trace_ids.mapped("state"), ["sent"] * 3)

    def test_order_in_between_stops_series(self):
        """Ordering the cart after email 1 stops the series."""
        cart = self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.alice)
        enrollment = self.enrollments(self.cart_sequence, self.alice)

        self.confirm(cart, NOW + timedelta(hours=5))
        # the confirmation is a trigger of its own: it ends the series at once
        with freeze_time(NOW + timedelta(hours=5, minutes=1)):
            self.env["behavioral.trigger"]._cron_enroll()
        self.assertRecordValues(enrollment, [{
            "state": "exited", "exit_reason": "goal", "next_due": False, "converted_order_id": cart.id,
        }])
        # attributed to the sequence's campaign, as Odoo's sales reports read it
        self.assertEqual(cart.campaign_id, self.cart_sequence.campaign_id)
        self.assertEqual(cart.medium_id.name, "Email")
        self.assertEqual(self.cart_sequence.converted_count, 1)
        self.assertEqual(self.cart_sequence.revenue, cart.amount_untaxed)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2))
        self.assertFalse(self._new_mails)
        self.assertEqual(len(enrollment.trace_ids), 1)

    def test_other_order_reaches_goal(self):
        """A later order of the same customer (another cart) also completes the goal,
        even when only the advancing cron sees it."""
        self.make_cart(self.bob)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.bob)
        other = self.env["sale.order"].sudo().create({
            "partner_id": self.bob.id,
            "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
        })
        self.confirm(other, NOW + timedelta(hours=10))
        with self.mock_queue():
            # advance only: the goal is checked before anything is sent
            with freeze_time(NOW + timedelta(days=2)):
                self.env["behavioral.enrollment"]._cron_advance()
        self.assertFalse(self._new_mails)
        self.assertEqual(self.enrollments(self.cart_sequence, self.bob).exit_reason, "goal")

    def test_ordered_before_detection_never_enrolls(self):
        """A cart ordered before it was seen as abandoned yields no trigger."""
        cart = self.make_cart(self.carol)
        self.confirm(cart, NOW + timedelta(hours=1))
        self.assertFalse(cart.campaign_id)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=4))
        self.assertFalse(self._new_mails)
        self.assertFalse(self.enrollments(self.cart_sequence))

    def test_anonymous_cart_enrolls_nobody(self):
        self.make_cart(self.public_partner)
        customer_without_email = self.env["res.partner"].create({"name": "No Mail"})
        self.make_cart(customer_without_email)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertFalse(self._new_mails)
        self.assertFalse(self.env["behavioral.trigger"].search([("trigger_type", "=", "cart_abandoned")]))
        self.assertFalse(self.enrollments(self.cart_sequence))

    def test_empty_cart_enrolls_nobody(self):
        cart = self.make_cart(self.alice)
        with freeze_time(NOW + timedelta(minutes=10)):
            cart.order_line.unlink()
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertFalse(self._new_mails)

    def test_old_cart_outside_entry_window(self):
        """Starting a sequence on a shop with history emails nobody about old carts."""
        self.cart_sequence.action_pause()
        self.make_cart(self.alice, at=NOW - timedelta(days=30))
        self.make_cart(self.bob, at=NOW - timedelta(days=4))
        self.start(self.cart_sequence, at=NOW)
        with self.mock_queue():
            self.run_crons(NOW)
        self.assertFalse(self._new_mails)
        self.assertFalse(self.enrollments(self.cart_sequence))

    def test_stale_trigger_outside_entry_window_is_refused(self):
        """Even a trigger recorded long ago (crons stopped for days) never enrolls."""
        cart = self.make_cart(self.alice)
        with freeze_time(NOW + timedelta(hours=3)):
            self.env["behavioral.trigger"]._cron_detect()
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=5))
        self.assertFalse(self._new_mails)
        trigger = self.env["behavioral.trigger"].search([
            ("res_model", "=", "sale.order"), ("res_id", "=", cart.id)])
        self.assertEqual(trigger.state, "done")
        self.assertIn("older than the entry window", trigger.state_msg)

    def test_new_idle_spell_is_a_new_trigger_but_same_document(self):
        """A cart changed after its first abandonment is abandoned again (a new
        trigger), but re-entry is once per cart by default."""
        cart = self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(self.alice)
        with freeze_time(NOW + timedelta(hours=4)):
            cart.order_line[0].product_uom_qty = 5
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=6, minutes=30), advance=False)
        triggers = self.env["behavioral.trigger"].search([
            ("res_model", "=", "sale.order"), ("res_id", "=", cart.id)])
        self.assertEqual(len(triggers), 2)
        self.assertIn("already enrolled", triggers[0].state_msg)
        self.assertEqual(len(self.enrollments(self.cart_sequence)), 1)

    def test_sequence_threshold_overrides_website_delay(self):
        self.cart_sequence.cart_idle_hours = 0.5
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=35))
        self.assertQueued(self.alice)

    def test_native_abandoned_cart_email_suppressed(self):
        """website_sale's own recovery email does not also go to covered websites."""
        self.website.send_abandoned_cart_email = True
        cart = self.make_cart(self.alice, at=NOW - timedelta(hours=30))
        with self.mock_queue(), freeze_time(NOW):
            self.env["website"]._send_abandoned_cart_email()
        self.assertFalse(self._new_mails.filtered(lambda m: m.model == "sale.order"))
        self.assertTrue(cart.cart_recovery_email_sent)

        # once the sequence is paused, website_sale takes over again
        self.cart_sequence.action_pause()
        cart2 = self.make_cart(self.bob, at=NOW - timedelta(hours=30))
        with self.mock_queue(), freeze_time(NOW):
            self.env["website"]._send_abandoned_cart_email()
        native = self._new_mails.filtered(lambda m: m.model == "sale.order" and m.res_id == cart2.id)
        self.assertEqual(len(native), 1)

    @users("marketer")
    def test_marketer_follows_results(self):
        """A marketing user reads the sequence's counters and the customer's enrollments."""
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        sequence = self.cart_sequence.with_env(self.env)
        self.assertEqual(sequence.enrollment_count, 1)
        self.assertEqual(sequence.running_count, 1)
        self.assertEqual(sequence.trace_count, 1)
        self.assertEqual(sequence.step_ids.sorted()[0].sent_count, 1)
        self.assertEqual(self.alice.with_env(self.env).behavioral_enrollment_count, 1)
        cart = self.enrollments(self.cart_sequence, self.alice).order_id.with_env(self.env)
        self.assertEqual(cart.behavioral_enrollment_count, 1)
        action = cart.action_view_behavioral_enrollments()
        self.assertEqual(self.env["behavioral.enrollment"].search(action["domain"]).order_id, cart)
        action = self.alice.with_env(self.env).action_view_behavioral_enrollments()
        self.assertEqual(self.env["behavioral.enrollment"].search(action["domain"]).sequence_id, sequence)


    def test_cart_emptied_or_deleted_meanwhile(self):
        """A cart emptied after email 1 skips the next reminders (the shipped
        condition); a deleted one ends the enrollment."""
        emptied = self.make_cart(self.alice)
        deleted = self.make_cart(self.bob)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertEqual(len(self._new_mails), 2)
        with freeze_time(NOW + timedelta(hours=5)):
            emptied.order_line.unlink()
            deleted.unlink()
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=4))
        self.assertFalse(self._new_mails)
        alice = self.enrollments(self.cart_sequence, self.alice)
        self.assertEqual(alice.trace_ids.sorted("id").mapped("state"), ["sent", "skipped"])
        self.assertEqual(alice.state, "running")
        bob = self.enrollments(self.cart_sequence, self.bob)
        self.assertRecordValues(bob, [{"state": "exited", "exit_reason": "source_missing"}])
        self.assertEqual(bob.trace_ids.sorted("id")[-1].failure_type, "source_missing")
