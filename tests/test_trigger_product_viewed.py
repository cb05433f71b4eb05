"""Trigger kind ``product_viewed``: browse abandonment.

The bulk of the cases record views through website_sale's own path
(``website.visitor._add_viewed_product``) at fixed clocks; the HTTP cases go
through the product page and the route its script calls."""
from datetime import datetime, timedelta

import lxml.html
from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import ValidationError
from odoo.tests.common import tagged

from .common import NOW
from .website_common import ShopBrowsingCase, WebsiteVisitsCommon


class TestProductViewed(WebsiteVisitsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.fern = cls.env["product.product"].create({
            "name": "Boston Fern", "list_price": 15.0, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        })
        cls.sequence = cls.env.ref("behavioral_email.sequence_product_viewed")
        cls.sequence.write({"state": "draft"})
        cls.start(cls, cls.sequence)
        cls.step1, cls.step2 = cls.sequence.step_ids.sorted()

    def triggers(self, partner=None):
        domain = [("trigger_type", "=", "product_viewed")]
        if partner:
            domain.append(("partner_id", "=", partner.id))
        return self.env["behavioral.trigger"].search(domain, order="id")

    def order(self, partner, products, at):
        order = self.env["sale.order"].sudo().create({
            "partner_id": partner.id,
            "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": 1}) for product in products],
        })
        self.confirm(order, at)
        return order

    def test_browse_abandonment_series(self):
        """A customer views two products and leaves: an hour after the last
        view, one email shows them, most recent first; two days later, the
        second one. Reruns add nothing."""
        visitor = self.visitor(self.alice)
        self.view_product(visitor, self.pot, NOW)
        self.view_product(visitor, self.tree, NOW + timedelta(minutes=10))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=9))
        self.assertFalse(self.triggers(), "still browsing: the idle delay counts from the last view")
        self.assertFalse(self._new_mails)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=11))
        trigger = self.triggers()
        self.assertRecordValues(trigger, [{
            "partner_id": self.alice.id, "res_model": "website.visitor", "res_id": visitor.id,
            "occurred_at": NOW + timedelta(hours=1, minutes=10), "state": "done",
            "company_id": self.website.company_id.id,
        }])
        self.assertEqual(trigger.payload["product_ids"], [self.tree.id, self.pot.id])
        self.assertEqual(trigger.payload["goal_since"][:19], "2026-03-02T09:00:00")
        self.assertEqual(trigger.payload["website_id"], self.website.id)
        self.assertEqual(trigger.dedupe_key, f"product_viewed:{self.alice.id}:20260302091000000000:60-24-1")
        enrollment = self.enrollments(self.sequence)
        self.assertRecordValues(enrollment, [{
            "partner_id": self.alice.id, "state": "running", "step_id": self.step2.id,
            "goal_since": NOW, "res_model": "website.visitor", "res_id": visitor.id,
        }])
        mail = self.assertQueued(self.alice)
        self.assertEqual(mail.subject, "Still thinking about it?")
        body = mail.body_html
        self.assertIn("Hi Alice Customer", body)
        self.assertLess(body.index("Olive Tree"), body.index("Terracotta Pot"), "most recent view first")
        self.assertNotIn("Boston Fern", body)
        for product in (self.pot, self.tree):
            self.assertIn(f"/web/image/product.product/{product.id}/image_128", body)
            trackers = self.env["link.tracker"].search([
                ("url", "=like", f"%{product.website_url}"), ("mass_mailing_id", "=", self.step1.mailing_id.id)])
            self.assertTrue(trackers, "the product links are tracked")
            for short_url in trackers.mapped("short_url"):
                self.assertIn(short_url, body)
        self.assertIn("80.00", body)
        self.assertIn("12.50", body)
        self.assertIn("/unsubscribe_from_list", body)

        # every cron again, now and later: nothing new
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=11))
            self.run_crons(NOW + timedelta(hours=5))
        self.assertFalse(self._new_mails)
        self.assertEqual(self.triggers(), trigger)
        self.assertEqual(self.enrollments(self.sequence), enrollment)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, hours=1, minutes=12))
        self.assertEqual(self.assertQueued(self.alice).subject, "Still on your mind?")
        self.assertRecordValues(enrollment, [{"state": "done"}])

    def test_ordering_a_viewed_product_reaches_the_goal(self):
        """An order of another product does not end the series; an order of a
        viewed product does, and is counted as the conversion."""
        self.view_product(self.visitor(self.alice), self.tree, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=5))
        self.assertQueued(self.alice)
        enrollment = self.enrollments(self.sequence, self.alice)

        self.order(self.alice, self.fern, NOW + timedelta(hours=5))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=6))
        self.assertRecordValues(enrollment, [{"state": "running"}])

        order = self.order(self.alice, self.tree, NOW + timedelta(days=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3))
        self.assertFalse(self._new_mails)
        self.assertRecordValues(enrollment, [{
            "state": "exited", "exit_reason": "goal", "converted_order_id": order.id}])
        self.assertEqual(order.campaign_id, self.sequence.campaign_id)

    def test_carted_or_ordered_since_viewing_not_signalled(self):
        """Products put in a cart or ordered after they were viewed are no
        browse abandonment: nothing when none is left."""
        self.view_product(self.visitor(self.alice), self.pot, NOW)
        self.order(self.alice, self.pot, NOW + timedelta(minutes=20))
        self.view_product(self.visitor(self.bob), self.tree, NOW)
        self.make_cart(self.bob, [(self.tree, 1)], at=NOW + timedelta(minutes=30))
        carol = self.visitor(self.carol)
        self.view_product(carol, self.pot, NOW)
        self.view_product(carol, self.tree, NOW + timedelta(minutes=1))
        self.order(self.carol, self.tree, NOW + timedelta(minutes=40))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3))
        self.assertEqual(self.triggers().partner_id, self.carol)
        self.assertEqual(self.triggers().payload["product_ids"], [self.pot.id])
        self.assertQueued(self.alice, count=0)
        self.assertQueued(self.bob, count=0)
        self.assertNotIn("Olive Tree", self.assertQueued(self.carol).body_html)

    def test_goal_reached_before_enrollment(self):
        """Ordered between detection and enrollment: refused, with the reason."""
        self.view_product(self.visitor(self.alice), self.pot, NOW)
        with freeze_time(NOW + timedelta(hours=1, minutes=5)):
            self.env["behavioral.trigger"]._cron_detect()
        self.order(self.alice, self.pot, NOW + timedelta(hours=1, minutes=6))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=7))
        self.assertFalse(self._new_mails)
        self.assertFalse(self.enrollments(self.sequence))
        self.assertIn("goal already reached", self.triggers(self.alice).state_msg)

    def test_unknown_public_and_internal_visitors_never_enroll(self):
        anonymous = self.visitor()
        self.assertFalse(anonymous.partner_id)
        public = self.visitor(self.public_partner)
        internal = self.visitor(self.user_marketing.partner_id)
        no_email = self.env["res.partner"].create({"name": "No Email"})
        for visitor in (anonymous, public, internal, self.visitor(no_email)):
            self.view_product(visitor, self.pot, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2))
        self.assertFalse(self.triggers())
        self.assertFalse(self._new_mails)

    def test_blocklisted_customer_gets_nothing(self):
        self.env["mail.blacklist"]._add(self.bob.email)
        self.view_product(self.visitor(self.bob), self.tree, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2))
        self.assertFalse(self._new_mails)
        enrollment = self.enrollments(self.sequence, self.bob)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertEqual(enrollment.trace_ids.failure_type, "mail_bl")

    def test_views_outside_entry_window(self):
        """Views from before the entry window (24 hours), or a spell the
        crons first see long after it ended, email nobody."""
        self.view_product(self.visitor(self.alice), self.pot, NOW - timedelta(days=3))
        self.view_product(self.visitor(self.bob), self.pot, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=26))
        self.assertFalse(self.triggers())
        self.assertFalse(self._new_mails)

    def test_anonymous_views_count_once_known(self):
        """Views made before logging in are moved to the customer's visitor
        at login (website.visitor._merge_visitor) and count."""
        anonymous = self.visitor()
        self.view_product(anonymous, self.pot, NOW)
        with freeze_time(NOW + timedelta(minutes=5)):
            anonymous._merge_visitor(self.visitor(self.alice))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=5))
        self.assertEqual(self.triggers().payload["product_ids"], [self.pot.id])
        self.assertIn("Terracotta Pot", self.assertQueued(self.alice).body_html)

    def test_minimum_views_and_look_back(self):
        """With a minimum of 2 views, only products viewed twice within the
        look-back window of the last view are listed."""
        self.sequence.view_min_count = 2
        alice = self.visitor(self.alice)
        self.view_product(alice, self.pot, NOW)
        self.view_product(alice, self.tree, NOW)
        self.view_product(alice, self.pot, NOW + timedelta(minutes=10))  # within 30 minutes: one view
        bob = self.visitor(self.bob)
        self.view_product(bob, self.tree, NOW - timedelta(hours=26))  # beyond the 24-hour look-back
        self.view_product(bob, self.tree, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=15))
        self.assertFalse(self.triggers())

        self.view_product(alice, self.pot, NOW + timedelta(hours=1, minutes=20))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=25))
        self.assertEqual(self.triggers().partner_id, self.alice)
        self.assertEqual(self.triggers().payload["product_ids"], [self.pot.id])
        self.assertEqual(self.triggers().payload["view_count"], 2)

    def test_new_spell_is_a_new_trigger(self):
        """Coming back later is a new spell: a new trigger (the look-back
        window still covers the first views), refused by the re-entry rule
        while the first enrollment runs."""
        visitor = self.visitor(self.alice)
        self.view_product(visitor, self.pot, NOW)
        self.run_crons(NOW + timedelta(hours=1, minutes=5))
        self.view_product(visitor, self.tree, NOW + timedelta(hours=20))
        self.run_crons(NOW + timedelta(hours=21, minutes=5))
        _first, second = self.triggers()
        self.assertEqual(second.payload["product_ids"], [self.tree.id, self.pot.id])
        self.assertIn("already enrolled", second.state_msg)
        self.assertEqual(len(self.enrollments(self.sequence)), 1)

    def test_sequences_with_other_settings_get_their_own_triggers(self):
        slow = self.sequence.copy({"view_idle_minutes": 180})
        self.start(slow)
        self.view_product(self.visitor(self.alice), self.pot, NOW)
        self.run_crons(NOW + timedelta(hours=1, minutes=5), advance=False)
        self.assertEqual(len(self.enrollments(self.sequence)), 1)
        self.assertFalse(self.enrollments(slow))
        self.run_crons(NOW + timedelta(hours=3, minutes=5), advance=False)
        self.assertEqual(len(self.triggers()), 2)
        self.assertEqual(len(self.enrollments(self.sequence)), 1)
        self.assertEqual(len(self.enrollments(slow)), 1)

    def test_unpublished_product_left_out_of_email(self):
        visitor = self.visitor(self.alice)
        self.view_product(visitor, self.pot, NOW)
        self.view_product(visitor, self.tree, NOW + timedelta(minutes=1))
        self.run_crons(NOW + timedelta(hours=1, minutes=5), advance=False)
        self.tree.is_published = False
        enrollment = self.enrollments(self.sequence)
        self.assertEqual(enrollment._get_viewed_products(), self.pot)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=6))
        body = self.assertQueued(self.alice).body_html
        self.assertIn("Terracotta Pot", body)
        self.assertNotIn("Olive Tree", body)

    def test_settings_are_validated(self):
        for field in ("view_min_count", "view_lookback_hours", "view_idle_minutes"):
            with self.assertRaises(ValidationError), self.env.cr.savepoint():
                self.sequence.write({field: 0})

    def test_detection_queries_do_not_grow(self):
        """Detecting 20 customers costs the queries of detecting 2."""
        shoppers = self.env["res.partner"].create([
            {"name": f"Viewer {i}", "email": f"viewer{i}@example.com"} for i in range(22)])
        counts = []
        for index, group in enumerate((shoppers[:2], shoppers[2:])):
            start = NOW + timedelta(days=2 * index)
            for partner in group:
                self.view_product(self.visitor(partner), self.pot, start)
            with freeze_time(start + timedelta(hours=1, minutes=5)):
                count, ids = self.count_queries(
                    self.env["behavioral.trigger"]._detect_product_viewed, start + timedelta(hours=1, minutes=5))
            self.assertEqual(len(ids), len(group))
            counts.append(count)
        self.assertEqual(counts[0], counts[1], f"detection queries for 2 and 20 customers: {counts}")

    def test_email_batch_queries_do_not_grow(self):
        """Rendering the viewed products costs the same for 5 or 15 emails:
        they are read for the whole batch at once."""
        shoppers = self.env["res.partner"].create([
            {"name": f"Browser {i}", "email": f"browser{i}@example.com"} for i in range(22)])
        counts = []
        sizes = (2, 5, 15)  # the first batch warms the caches up
        for index, size in enumerate(sizes):
            start = NOW + timedelta(days=2 * index)
            group = shoppers[sum(sizes[:index]):][:size]
            for partner in group:
                visitor = self.visitor(partner)
                self.view_product(visitor, self.pot, start)
                self.view_product(visitor, self.tree, start + timedelta(minutes=1))
            due = start + timedelta(hours=1, minutes=5)
            self.run_crons(due, advance=False)
            with self.mock_queue(), freeze_time(due):
                count, _result = self.count_queries(self.env["behavioral.enrollment"]._cron_advance)
                self.assertEqual(len(self._new_mails), size)
                self.assertIn("Olive Tree", self._new_mails[0].body_html)
            self.enrollments(self.sequence).action_stop()
            counts.append(count)
        self.assertEqual(counts[1], counts[2], f"advance queries by batch size {sizes}: {counts}")


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestProductViewedOverHttp(ShopBrowsingCase):
    """A customer opens product pages in the real shop; the page reports each
    view the way its script does (website_sale_recently_viewed.js)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._init_mail_gateway()
        cls.products = cls.env["product.product"].create([
            {"name": "Copper Watering Can", "list_price": 39.0, "sale_ok": True, "is_published": True,
             "type": "consu", "taxes_id": [(5, 0, 0)]},
            {"name": "Bamboo Trellis", "list_price": 9.5, "sale_ok": True, "is_published": True,
             "type": "consu", "taxes_id": [(5, 0, 0)]},
            {"name": "Garden Kneeler", "list_price": 19.0, "sale_ok": True, "is_published": True,
             "type": "consu", "taxes_id": [(5, 0, 0)]},
        ])
        cls.can, cls.trellis, cls.kneeler = cls.products
        cls.alice = mail_new_test_user(
            cls.env, login="viewer_alice", password="viewer_alice", name="Alice Viewer",
            email="alice.viewer@example.com", groups="base.group_portal")
        cls.bob = mail_new_test_user(
            cls.env, login="viewer_bob", password="viewer_bob", name="Bob Viewer",
            email="bob.viewer@example.com", groups="base.group_portal")
        cls.sequence = cls.env.ref("behavioral_email.sequence_product_viewed")
        cls.sequence.write({"state": "draft"})
        cls.env["behavioral.trigger"].search([("state", "=", "new")]).write({"state": "done"})

    def _view(self, product):
        """Open the product page, then report the view as its script does:
        the tracked #product_detail section, its product_id input."""
        page = self.url_open(product.website_url)
        self.assertEqual(page.status_code, 200)
        detail = lxml.html.fromstring(page.text).get_element_by_id("product_detail")
        self.assertEqual(detail.get("data-view-track"), "1")
        [product_input] = detail.xpath(".//input[contains(@class, 'product_id')][@name='product_id']")
        self.make_jsonrpc_request("/shop/products/recently_viewed_update", {
            "product_id": int(product_input.get("value")),
        })

    def _sequence_mails(self):
        return self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment")

    def test_viewed_products_emailed(self):
        self.sequence.action_start()
        self.env["mail.blacklist"]._add(self.bob.email)
        self.authenticate(self.alice.login, self.alice.login)
        self._view(self.can)
        self._view(self.trellis)
        self.authenticate(self.bob.login, self.bob.login)
        self._view(self.kneeler)
        self.authenticate(None, None)  # an anonymous visitor, never logging in
        self._view(self.kneeler)
        self.logout()
        tracks = self.env["website.track"].search([("product_id", "in", self.products.ids)])
        self.assertEqual(len(tracks), 4)
        self.assertEqual(len(tracks.visitor_id.filtered(lambda v: not v.partner_id)), 1)

        later = datetime.now() + timedelta(hours=1, minutes=5)
        with self.mock_mail_gateway():
            self._run_crons(later)
            # every cron again: nothing new
            self._run_crons(later)
            self._run_crons(later + timedelta(minutes=20))
        enrollments = self.env["behavioral.enrollment"].search([("sequence_id", "=", self.sequence.id)])
        self.assertEqual(enrollments.partner_id, self.alice.partner_id | self.bob.partner_id)
        mail = self._sequence_mails()
        self.assertEqual(len(mail), 1, "one email, to Alice: Bob is blocklisted, the anonymous visitor unknown")
        self.assertEqual(mail.recipient_ids, self.alice.partner_id)
        self.assertLess(mail.body_html.index("Bamboo Trellis"), mail.body_html.index("Copper Watering Can"))
        self.assertNotIn("Garden Kneeler", mail.body_html)
        alice_enrollment = enrollments.filtered(lambda e: e.partner_id == self.alice.partner_id)
        self.assertEqual(alice_enrollment.trace_ids.mail_mail_id, mail)
        self.assertEqual(enrollments.filtered(lambda e: e.partner_id == self.bob.partner_id).exit_reason, "blacklisted")

    def test_anonymous_views_count_after_login(self):
        self.sequence.action_start()
        # a browser with no session yet: the first visit opens one
        self._view(self.kneeler)
        self._login_in_this_session(self.alice)
        self._view(self.can)
        visitor = self.env["website.visitor"].search([("partner_id", "=", self.alice.partner_id.id)])
        self.assertEqual(visitor.website_track_ids.product_id, self.kneeler | self.can)

        with self.mock_mail_gateway():
            self._run_crons(datetime.now() + timedelta(hours=1, minutes=5))
        mail = self._sequence_mails()
        self.assertEqual(mail.recipient_ids, self.alice.partner_id)
        self.assertIn("Garden Kneeler", mail.body_html)
        self.assertIn("Copper Watering Can", mail.body_html)
