"""Trigger kind customer_inactive: the win-back of customers who stopped
ordering, from orders confirmed at frozen dates."""
from datetime import timedelta

from freezegun import freeze_time
from lxml import html

from .common import NOW, BehavioralCommon


class TestCustomerInactive(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.winback = cls.env.ref("behavioral_email.sequence_winback")
        cls.winback.write({"state": "draft"})

    def order(self, partner, at):
        """An order of ``partner`` confirmed at ``at`` (its order date)."""
        order = self.env["sale.order"].create({
            "partner_id": partner.id,
            "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
        })
        self.confirm(order, at)
        self.assertEqual(order.date_order, at)
        return order

    def _customers(self, prefix, count):
        return self.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"{prefix} {i}", "email": f"{prefix.lower()}{i}@example.com"} for i in range(count)
        ])

    def _triggers(self):
        return self.env["behavioral.trigger"].search([("trigger_type", "=", "customer_inactive")])

    def test_winback_after_90_days(self):
        self.assertRecordValues(self.winback, [{
            "inactive_days": 90, "inactive_median_factor": 0, "goal": "order_placed", "state": "draft"}])
        dora, eve = self._customers("Lapsed", 2)
        last = self.order(self.alice, NOW - timedelta(days=90) + timedelta(hours=1))
        self.order(self.alice, NOW - timedelta(days=150))
        self.order(self.bob, NOW - timedelta(days=200))  # lapsed long before: outside the entry window
        self.order(self.carol, NOW - timedelta(days=95))
        self.order(self.carol, NOW - timedelta(days=10))  # still active
        self.order(eve, NOW - timedelta(days=90) + timedelta(hours=1))
        self.env["mail.blacklist"]._add(eve.email)
        self.public_partner.email = "public@example.com"
        self.order(self.public_partner, NOW - timedelta(days=90) + timedelta(hours=1))
        self.start(self.winback)

        with self.mock_queue():
            self.run_crons(NOW)
        self.assertFalse(self._new_mails, "not 90 days yet")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2))
        mail = self.assertQueued(self.alice, sequence=self.winback)
        self.assertEqual(mail.subject, "It has been a while")
        root = html.fromstring(mail.body_html)
        self.assertEqual([" ".join(p.text_content().split()) for p in root.iter("p")][:2], [
            "Hi Alice Customer,",
            f"It has been a while since your last order ({last.name}), and we have missed you."])
        [button] = root.xpath("//a[normalize-space(.) = 'See what is new']")
        self.assertEqual(self.tracked_url(button.get("href")),
                         f"{self.winback.get_base_url()}/shop")
        self.assertEqual(len(self._new_mails), 1, "nobody else: not lapsed, blocklisted, public or too old")
        self.assertQueued(dora, count=0)
        self.assertRecordValues(self.enrollments(self.winback, eve), [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertEqual(self._triggers().partner_id, self.alice | eve)
        trigger = self._triggers().filtered(lambda t: t.partner_id == self.alice)
        self.assertRecordValues(trigger, [{
            "res_model": "res.partner", "res_id": self.alice.id,
            "occurred_at": NOW + timedelta(hours=1),
        }])
        self.assertEqual(trigger.payload["last_order_id"], last.id)

        # every cron again: nothing more
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
            self.run_crons(NOW + timedelta(days=1))
        self.assertFalse(self._new_mails)
        self.assertEqual(len(self._triggers()), 2)

        # she comes back: the series ends, converted
        comeback = self.order(self.alice, NOW + timedelta(days=3))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=1))
            self.run_crons(NOW + timedelta(days=8))
        self.assertFalse(self._new_mails)
        enrollment = self.enrollments(self.winback, self.alice)
        self.assertRecordValues(enrollment, [{
            "state": "exited", "exit_reason": "goal", "converted_order_id": comeback.id}])

        # and lapses again 90 days later: a new lapse, a new series
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=93, hours=1))
        self.assertQueued(self.alice, sequence=self.winback)
        self.assertEqual(len(self.enrollments(self.winback, self.alice)), 2)

    def test_goal_met_before_enrollment(self):
        """A customer who orders between detection and enrollment is left alone."""
        self.order(self.alice, NOW - timedelta(days=90))
        self.start(self.winback)
        with freeze_time(NOW + timedelta(minutes=10)):
            self.env["behavioral.trigger"]._cron_detect()
        self.order(self.alice, NOW + timedelta(minutes=20))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=30))
        self.assertFalse(self._new_mails)
        self.assertIn("goal already reached", self._triggers().state_msg)
        self.assertFalse(self.enrollments(self.winback))

    def test_own_rhythm(self):
        """With a gap factor, regular buyers are missed sooner: three times
        their median gap, never before the floor; a one-time buyer waits the
        full number of days."""
        rhythm = self.winback.copy({
            "name": "Regulars", "inactive_days": 90, "inactive_median_factor": 3, "inactive_min_days": 20})
        frank, gina, hank = self._customers("Regular", 3)
        for days in (60, 50, 40, 30):  # every 10 days: missed after 30
            self.order(frank, NOW - timedelta(days=days) + timedelta(hours=1))
        self.order(gina, NOW - timedelta(days=30) + timedelta(hours=1))  # one order: 90 days
        for days in (22, 21, 20):  # every day: 3 days, but the floor is 20
            self.order(hank, NOW - timedelta(days=days) + timedelta(hours=2))
        self.start(self.winback)
        self.start(rhythm)

        with self.mock_queue():
            self.run_crons(NOW)
        self.assertFalse(self._new_mails)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertQueued(frank, sequence=rhythm)
        self.assertQueued(hank, sequence=rhythm)
        self.assertQueued(gina, count=0)
        self.assertEqual(len(self._new_mails), 2)
        self.assertFalse(self.enrollments(self.winback), "the 90-day series has nobody yet")
        by_partner = {t.partner_id: t for t in self._triggers()}
        self.assertEqual(by_partner[frank].payload["median_gap_days"], 10)
        self.assertEqual(by_partner[frank].occurred_at, NOW + timedelta(hours=1))
        self.assertEqual(by_partner[hank].occurred_at, NOW + timedelta(hours=2))

    def test_detection_queries(self):
        """Detection is one statement whatever the number of lapsed customers."""
        self.start(self.winback)
        counts = []
        for index, size in enumerate((1, 2, 20)):
            due = NOW + timedelta(days=10 * index)
            for customer in self._customers(f"Batch{index}", size):
                self.order(customer, due - timedelta(days=90))
            with freeze_time(due + timedelta(minutes=5)):
                count, created = self.count_queries(self.env["behavioral.trigger"]._cron_detect)
                counts.append(count)
            self.assertEqual(len(created), size)
        self.assertEqual(counts[1], counts[2], f"detection queries for 2 and 20 lapsed customers: {counts}")
