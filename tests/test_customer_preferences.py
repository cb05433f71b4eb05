"""The crons honour what customers chose: topics, frequency, pause.

A postponed step waits (its enrollment stays running, next_due moves, the
reason is kept); it is never dropped.
"""
from datetime import date, timedelta

from freezegun import freeze_time

from .common import NOW, BehavioralCommon


class TestCustomerPreferences(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.topic_cart = cls.env.ref("behavioral_email.mailing_list_topic_cart")
        cls.topic_purchase = cls.env.ref("behavioral_email.mailing_list_topic_purchase")
        cls.start(cls, cls.cart_sequence)
        cls.start(cls, cls.order_sequence)

    def order(self, partner, at):
        order = self.env["sale.order"].create({
            "partner_id": partner.id,
            "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
        })
        self.confirm(order, at)
        return order

    def test_shipped_sequences_have_topics_and_reasons(self):
        self.assertEqual(self.cart_sequence.mailing_list_ids, self.topic_cart)
        self.assertEqual(self.order_sequence.mailing_list_ids, self.topic_purchase)
        self.assertEqual(self.welcome_sequence.mailing_list_ids,
                         self.env.ref("behavioral_email.mailing_list_topic_news"))
        topics = self.topic_cart | self.topic_purchase
        self.assertTrue(all(topics.mapped("is_public")))
        self.assertTrue(all(topics.mapped("behavioral_is_topic")))
        self.assertIn("left items in your cart", self.cart_sequence.reason_text)
        shipped = self.env["ir.model.data"].search([
            ("module", "like", "behavioral_email"), ("model", "=", "behavioral.sequence")])
        sequences = self.env["behavioral.sequence"].browse(shipped.mapped("res_id"))
        self.assertGreaterEqual(len(sequences), 3)
        for sequence in sequences.filtered(lambda s: s.consent_mode != "transactional"):
            self.assertTrue(sequence.mailing_list_ids, f"{sequence.name} has a topic")
            self.assertTrue(sequence.mailing_list_ids.is_public, f"{sequence.name}'s topic is shown to customers")
            self.assertTrue(sequence.reason_text, f"{sequence.name} says why it is sent")

    def test_existing_customers_receive_topics_by_default(self):
        """No subscription row: the customer counts as subscribed."""
        self.assertFalse(self.env["mailing.contact"].search([("email_normalized", "=", "alice@example.com")]))
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(self.alice)

    def test_opted_out_topic_gets_nothing_from_its_sequences(self):
        """Alice opts out of cart reminders: her cart series stops, her order
        thanks still come (another topic)."""
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(self.alice)
        self.topic_cart._behavioral_set_subscriptions(self.alice, {self.topic_cart: False})
        with self.mock_queue():
            self.run_crons(self.later(days=1, hours=3))
        self.assertQueued(self.alice, count=0)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "opted_out"}])
        self.assertEqual(enrollment.trace_ids.sorted("id").mapped("failure_type"), [False, "mail_optout"])
        # a new cart is refused at entry; the order series is another topic
        self.make_cart(self.alice, at=self.later(days=2))
        self.order(self.alice, self.later(days=2, hours=1))
        with self.mock_queue():
            self.run_crons(self.later(days=2, hours=3))
        self.assertQueued(self.alice, count=0, sequence=self.cart_sequence)
        self.assertQueued(self.alice, count=1, sequence=self.order_sequence)

    def test_weekly_second_email_waits(self):
        """At most one email a week across sequences: email 2 of the cart series
        waits until a week after email 1, then goes."""
        self.alice.behavioral_frequency = "weekly"
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(self.alice)
        sent_at = self.later(hours=3)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        with self.mock_queue():
            self.run_crons(self.later(days=1, hours=3))
        self.assertQueued(self.alice, count=0)
        self.assertRecordValues(enrollment, [{
            "state": "running", "step_id": self.cart_sequence.step_ids.sorted()[1].id,
            "next_due": sent_at + timedelta(days=7),
            "wait_reason": "The customer asked for at most one email a week",
        }])
        # nothing before the week is over, whatever the crons do meanwhile
        with self.mock_queue():
            self.run_crons(sent_at + timedelta(days=6, hours=23))
        self.assertQueued(self.alice, count=0)
        with self.mock_queue():
            self.run_crons(sent_at + timedelta(days=7, minutes=1))
        self.assertEqual(self.assertQueued(self.alice).subject, "Still thinking it over?")
        self.assertFalse(enrollment.wait_reason)

    def test_weekly_counts_every_marketing_sequence(self):
        """An order thanks right after a cart email waits for the week; two
        steps of one customer due in the same batch give one email."""
        self.alice.behavioral_frequency = "weekly"
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(self.alice)
        self.order(self.alice, self.later(hours=5))
        with self.mock_queue():
            self.run_crons(self.later(hours=5, minutes=1))
        self.assertQueued(self.alice, count=0)
        thanks = self.enrollments(self.order_sequence, self.alice)
        self.assertRecordValues(thanks, [{"state": "running", "next_due": self.later(hours=3, days=7)}])

        # a new contact: welcome and cart emails fall due together, one goes
        self.start(self.welcome_sequence)
        with freeze_time(NOW):
            dora = self.env["res.partner"].create({
                "name": "Dora Weekly", "email": "dora@example.com", "behavioral_frequency": "weekly"})
        self.make_cart(dora)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(dora, count=1, sequence=self.welcome_sequence)
        cart = self.enrollments(self.cart_sequence, dora)
        self.assertRecordValues(cart, [{
            "state": "running", "next_due": self.later(hours=3, days=7),
            "wait_reason": "The customer asked for at most one email a week",
        }])

    def test_monthly(self):
        self.alice.behavioral_frequency = "monthly"
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(days=29))
        self.assertQueued(self.alice, count=0)
        self.assertEqual(self.enrollments(self.cart_sequence, self.alice).next_due,
                         self.later(hours=3) + timedelta(days=30))

    def test_pause_holds_everything_until_its_date(self):
        """A pause until a date: the first email waits at entry, nothing is
        dropped, everything resumes on that day (in the customer's time zone)."""
        self.alice.write({"behavioral_pause_until": date(2026, 3, 10), "tz": "Europe/Brussels"})
        self.order(self.alice, self.later(hours=-1))
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
            self.run_crons(self.later(days=5))
        self.assertQueued(self.alice, count=0)
        enrollments = self.enrollments(self.cart_sequence, self.alice) | self.enrollments(self.order_sequence, self.alice)
        resume = NOW.replace(day=9, hour=23)  # 10 March 00:00 in Brussels
        self.assertRecordValues(enrollments, [
            {"state": "running", "next_due": resume, "wait_reason": "Paused by the customer until 2026-03-10"},
        ] * 2)
        self.assertFalse(enrollments.trace_ids, "a held step leaves no trace: it has not run")
        with self.mock_queue():
            self.run_crons(resume + timedelta(minutes=1))
        self.assertQueued(self.alice, count=1, sequence=self.cart_sequence)
        self.assertQueued(self.alice, count=1, sequence=self.order_sequence)

    def test_pause_in_the_past_is_no_pause(self):
        self.alice.behavioral_pause_until = date(2026, 3, 1)
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(self.alice)

    def test_transactional_sequences_are_exempt(self):
        self.order_sequence.consent_mode = "transactional"
        self.alice.write({"behavioral_pause_until": date(2026, 4, 1), "behavioral_frequency": "monthly"})
        self.order(self.alice, NOW)
        with self.mock_queue():
            self.run_crons(self.later(minutes=1))
        self.assertQueued(self.alice, sequence=self.order_sequence)

    def test_held_batch_queries_do_not_grow(self):
        """Holding capped customers costs the same for 5 as for 25."""
        shoppers = self.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"Weekly {i}", "email": f"weekly{i}@example.com", "behavioral_frequency": "weekly"}
            for i in range(32)
        ])
        counts = []
        start = 0
        for index, size in enumerate((2, 5, 25)):
            group = shoppers[start:start + size]
            start += size
            day = NOW + timedelta(days=index)
            for partner in group:
                self.make_cart(partner, at=day)
            with self.mock_queue():
                self.run_crons(day + timedelta(hours=3))  # email 1 goes
            with freeze_time(day + timedelta(days=1, hours=3)):
                self.env["behavioral.trigger"]._cron_enroll()
                # email 2 held for all
                counts.append(self.count_queries(self.env["behavioral.enrollment"]._cron_advance)[0])
            held = self.enrollments(self.cart_sequence).filtered(lambda e: e.partner_id in group)
            self.assertEqual(set(held.mapped("wait_reason")), {"The customer asked for at most one email a week"})
            held.action_stop()
        self.assertEqual(counts[1], counts[2], f"hold queries by batch size (2, 5, 25): {counts}")
