from datetime import timedelta

from freezegun import freeze_time

from .common import NOW, BehavioralCommon


class TestBatchQueries(BehavioralCommon):
    """The advancing and enrolling batches cost the same number of queries
    whatever their size: nothing is done per enrollment."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start(cls, cls.cart_sequence)
        cls.shoppers = cls.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"Shopper {i}", "email": f"shopper{i}@example.com"} for i in range(32)
        ])

    def _carts(self, partners, at):
        for partner in partners:
            self.make_cart(partner, at=at)

    def _batches(self):
        """Warm-up batch of 2 (template compilation, ormcaches), then batches
        of 5 and 25 new abandoned carts: yields (customers, time they are due)."""
        sizes = (2, 5, 25)
        for index, size in enumerate(sizes):
            start = NOW + timedelta(days=index)
            group = self.shoppers[sum(sizes[:index]):][:size]
            self._carts(group, start)
            yield group, start + timedelta(hours=3)

    def test_advance_batch_queries_do_not_grow(self):
        counts = []
        for group, due in self._batches():
            size = len(group)
            with freeze_time(due):
                self.env["behavioral.trigger"]._cron_detect()
                self.env["behavioral.trigger"]._cron_enroll()
            with self.mock_queue(), freeze_time(due):
                counts.append(self.count_queries(self.env["behavioral.enrollment"]._cron_advance)[0])
                self.assertEqual(len(self._new_mails), size)
            # keep later batches to the new carts only
            self.enrollments(self.cart_sequence).action_stop()
        self.assertEqual(counts[1], counts[2], f"advance queries by batch size (2, 5, 25): {counts}")

    def test_enroll_batch_queries_do_not_grow(self):
        counts = []
        for group, due in self._batches():
            size = len(group)
            with freeze_time(due):
                self.env["behavioral.trigger"]._cron_detect()
                counts.append(self.count_queries(self.env["behavioral.trigger"]._cron_enroll)[0])
            self.assertEqual(len(self.enrollments(self.cart_sequence).filtered(
                lambda e: e.partner_id in group)), size)
        self.assertEqual(counts[1], counts[2], f"enroll queries by batch size (2, 5, 25): {counts}")
