"""A/B variants of an email step: the split, what each customer receives,
and the winner chosen on clicks."""
from datetime import timedelta

from freezegun import freeze_time

from odoo.exceptions import UserError, ValidationError
from odoo.tests.common import users

from .common import NOW, BehavioralCommon

BODY = ('<p>Hello <t t-out="object.partner_id.name"/>, '
        '<a href="https://shop.example.com/shop">see what is new</a></p>')


class VariantCommon(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sequence = cls.env["behavioral.sequence"].create({
            "name": "Welcome test", "trigger_type": "partner_created",
            "step_ids": [(0, 0, {"subject": "Welcome", "body_html": BODY, "delay_value": 0})],
        })
        cls.step = cls.sequence.step_ids
        cls.variant_a, cls.variant_b = cls.env["behavioral.step.variant"].create([
            {"step_id": cls.step.id, "subject": "Welcome, A", "weight": 50},
            {"step_id": cls.step.id, "subject": "Welcome, B", "weight": 50, "sender_name": "Bea from the shop",
             "body_html": BODY.replace("see what is new", "see our favourites")},
        ])
        cls.batch = 0

    def new_customers(self, count, at):
        """Contacts signing up at ``at``, as the shop creates them."""
        self.batch += 1
        with freeze_time(at):
            return self.env["res.partner"].create([
                {"name": f"Customer {self.batch}-{i}", "email": f"customer{self.batch}.{i}@example.com"}
                for i in range(count)
            ])

    def traces_of(self, partners):
        return self.env["behavioral.trace"].search([
            ("partner_id", "in", partners.ids), ("step_id", "=", self.step.id)])


class TestVariantSplit(VariantCommon):

    def test_split_is_deterministic_and_weighted(self):
        self.variant_a.weight = 70
        self.variant_b.weight = 30
        enrollments = self.env["behavioral.enrollment"].create([
            {"sequence_id": self.sequence.id, "partner_id": self.alice.id} for _i in range(1000)])
        split = {variant: group for variant, group in self.step._split_by_variant(enrollments)}
        self.assertEqual(set(split), {self.variant_a, self.variant_b})
        self.assertEqual(sum(len(group) for group in split.values()), 1000)
        # 700 expected, standard deviation 14.5
        self.assertAlmostEqual(len(split[self.variant_a]), 700, delta=50)
        # the same enrollment always gets the same variant, in any batch
        again = {variant: group for variant, group in self.step._split_by_variant(enrollments[::-1])}
        self.assertEqual(again[self.variant_a].sorted("id"), split[self.variant_a].sorted("id"))
        alone = [self.step._split_by_variant(enrollment)[0][0] for enrollment in enrollments[:50]]
        self.assertEqual(alone, [self.variant_a if e in split[self.variant_a] else self.variant_b
                                 for e in enrollments[:50]])
        # a winner takes everyone
        self.step.winner_variant_id = self.variant_b
        self.assertEqual(self.step._split_by_variant(enrollments), [(self.variant_b, enrollments)])

    def test_each_customer_gets_their_variant(self):
        self.start(self.sequence)
        customers = self.new_customers(20, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        traces = self.traces_of(customers)
        self.assertEqual(len(traces), 20)
        self.assertEqual(set(traces.mapped("variant_id")), {self.variant_a, self.variant_b})
        for trace in traces:
            [mail] = self.assertQueued(trace.partner_id)
            variant = trace.variant_id
            self.assertEqual(mail.subject, variant.subject)
            self.assertEqual(trace.subject, variant.subject)
            self.assertEqual(trace.mailing_trace_id.mass_mailing_id, variant.mailing_id)
            self.assertEqual(mail.mailing_id, variant.mailing_id)
            if variant == self.variant_b:
                self.assertIn("see our favourites", mail.body_html)
                self.assertIn("Bea from the shop", mail.email_from)
                self.assertIn("shop@example.com", mail.email_from)
            else:
                self.assertIn("see what is new", mail.body_html)
                self.assertNotIn("Bea", mail.email_from)
            # tracked like the step's own email: a short link of the variant's mailing
            self.assertIn("/r/", mail.body_html)
            self.assertIn("/unsubscribe_from_list", mail.body_html)
        self.assertEqual(self.variant_a.kpi_sent + self.variant_b.kpi_sent, 20)
        self.assertEqual(self.step.kpi_sent, 20)
        # the step's own email is never sent
        self.assertFalse(self.env["mailing.trace"].search([("mass_mailing_id", "=", self.step.mailing_id.id)]))

    @users("marketer")
    def test_first_variant_offers_the_step_content(self):
        sequence = self.env["behavioral.sequence"].create({
            "name": "Offers", "trigger_type": "partner_created",
            "step_ids": [(0, 0, {"subject": "Our offer", "preview": "Inside", "body_html": "<p>Offer</p>",
                                 "delay_value": 0})],
        })
        step = sequence.step_ids
        Variant = self.env["behavioral.step.variant"].with_context(default_step_id=step.id)
        defaults = Variant.default_get(["name", "subject", "preview", "body_html", "weight"])
        self.assertEqual(defaults["name"], "Variant A")
        self.assertEqual((defaults["subject"], defaults["preview"]), ("Our offer", "Inside"))
        self.assertIn("Offer", defaults["body_html"])
        first = Variant.create({})
        self.assertRecordValues(first, [{"name": "Variant A", "subject": "Our offer", "preview": "Inside"}])
        self.assertNotEqual(first.mailing_id, step.mailing_id)
        self.assertEqual(first.mailing_id.campaign_id, sequence.campaign_id)
        self.assertTrue(first.mailing_id.use_in_behavioral)
        with self.assertRaisesRegex(UserError, "single variant"):
            sequence.action_start()
        second = Variant.create({"subject": "Last chance"})
        self.assertEqual(second.name, "Variant B")
        self.assertAlmostEqual(second.share, 0.5)
        sequence.action_start()
        self.assertEqual(sequence.state, "running")

    def test_variant_limits(self):
        with self.assertRaises(ValidationError):
            self.variant_a.weight = 0
        self.env["behavioral.step.variant"].create([{"step_id": self.step.id} for _i in range(3)])
        with self.assertRaisesRegex(ValidationError, "5 at most"):
            self.env["behavioral.step.variant"].create({"step_id": self.step.id})
        with self.assertRaises(ValidationError):
            self.step.ab_confidence = 0.8

    def test_copy_keeps_the_variants(self):
        copy = self.sequence.copy()
        self.assertEqual(copy.step_ids.variant_ids.mapped("subject"), ["Welcome, A", "Welcome, B"])
        self.assertFalse(copy.step_ids.variant_ids.mailing_id & self.step.variant_ids.mailing_id)


class TestVariantWinner(VariantCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.step.write({"ab_metric": "click", "ab_min_sample": 20, "ab_confidence": 0.95})

    def click(self, traces, at):
        with freeze_time(at):
            traces.mailing_trace_id.set_clicked()
        self.env.invalidate_all()  # the numbers shown are read again, as in a new request

    def pick_winners(self, at):
        with freeze_time(at):
            return self.env["behavioral.step.variant"]._cron_pick_winners()

    def decision_messages(self):
        return self.sequence.message_ids.filtered(lambda m: "wins on" in (m.body or ""))

    def test_clicks_make_a_variant_win(self):
        self.start(self.sequence)
        # a first wave of 20: no variant can have 20 emails while the other has some
        wave1 = self.new_customers(20, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        b_wave1 = self.traces_of(wave1).filtered(lambda t: t.variant_id == self.variant_b)
        self.click(b_wave1[:3], NOW + timedelta(hours=1))
        self.assertFalse(self.pick_winners(NOW + timedelta(hours=2)), "no winner before the minimum sample")

        # 60 more: both variants past 20 emails, but 3 clicks against 1 could be chance
        wave2 = self.new_customers(60, NOW + timedelta(hours=3))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3, minutes=1))
        traces = self.traces_of(wave1 | wave2)
        a_traces = traces.filtered(lambda t: t.variant_id == self.variant_a)
        b_traces = traces.filtered(lambda t: t.variant_id == self.variant_b)
        self.assertGreaterEqual(min(len(a_traces), len(b_traces)), 20)
        self.click(a_traces[:1], NOW + timedelta(hours=4))
        self.click((b_traces - b_wave1[:3])[:3 - len(b_wave1[:3])], NOW + timedelta(hours=4))
        self.assertEqual((self.variant_a.kpi_clicked, self.variant_b.kpi_clicked), (1, 3))
        self.assertFalse(self.pick_winners(NOW + timedelta(hours=5)), "a small difference is not a winner")
        self.assertFalse(self.step.winner_variant_id)

        # B's customers keep clicking: 14 clicks against 1
        self.click(b_traces.filtered(lambda t: not t.links_click_datetime)[:11], NOW + timedelta(hours=6))
        self.assertEqual((self.variant_a.kpi_clicked, self.variant_b.kpi_clicked), (1, 14))
        # still not before each variant has the minimum sample
        self.step.ab_min_sample = max(len(a_traces), len(b_traces)) + 1
        self.assertFalse(self.pick_winners(NOW + timedelta(hours=7)))
        self.assertFalse(self.decision_messages())
        self.step.ab_min_sample = 20
        self.assertEqual(self.pick_winners(NOW + timedelta(hours=7)), self.step)
        self.assertEqual(self.step.winner_variant_id, self.variant_b)
        self.assertTrue(self.variant_b.is_winner)
        self.assertEqual(self.step.ab_decided_at, NOW + timedelta(hours=7))
        [message] = self.decision_messages()
        self.assertIn("Variant B wins on click rate", message.body)
        self.assertIn(f"14 of {len(b_traces)}", message.body)
        self.assertIn(f"1 of {len(a_traces)}", message.body)
        self.assertIn("Two-proportion z-test at 95 % confidence: against Variant A p = ", message.body)
        self.assertIn("each below 0.05", message.body)
        self.assertIn("Variant B wins", self.step.ab_decision)
        # decided once: the next run posts nothing more
        self.assertFalse(self.pick_winners(NOW + timedelta(hours=8)))
        self.assertEqual(len(self.decision_messages()), 1)

        # from now on everyone gets B
        wave3 = self.new_customers(12, NOW + timedelta(hours=9))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=9, minutes=1))
        traces = self.traces_of(wave3)
        self.assertEqual(len(traces), 12)
        self.assertEqual(traces.variant_id, self.variant_b)
        for partner in wave3:
            self.assertEqual(self.assertQueued(partner).subject, "Welcome, B")

    def test_guardrail_keeps_a_bouncing_variant_from_winning(self):
        self.start(self.sequence)
        customers = self.new_customers(80, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        traces = self.traces_of(customers)
        b_traces = traces.filtered(lambda t: t.variant_id == self.variant_b)
        self.assertGreaterEqual(len(b_traces), 20)
        self.click(b_traces[:14], NOW + timedelta(hours=1))
        with freeze_time(NOW + timedelta(hours=1)):
            b_traces[-8:].mailing_trace_id.set_bounced()
        self.env.invalidate_all()
        self.assertEqual(self.variant_b.kpi_bounced, 8)
        self.assertFalse(self.pick_winners(NOW + timedelta(hours=2)), "more bounces: no win")
        self.assertFalse(self.step.winner_variant_id)
        self.assertFalse(self.decision_messages())

    def test_paused_or_draft_sequences_are_left_alone(self):
        self.assertEqual(self.sequence.state, "draft")
        self.assertFalse(self.pick_winners(NOW))
