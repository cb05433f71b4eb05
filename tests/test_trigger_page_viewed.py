"""Trigger kind ``page_viewed``: content and category engagement.

The bulk of the cases record visits through website's own path
(``website.visitor._add_tracking``) at fixed clocks; the HTTP case browses the
shop's category pages for real."""
from datetime import datetime, timedelta

import lxml.html
from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import ValidationError
from odoo.tests.common import tagged

from .common import NOW
from .website_common import ShopBrowsingCase, WebsiteVisitsCommon

PLANTERS = "/shop/category/planters-1"
TREES = "/shop/category/trees-2"


class TestPageViewed(WebsiteVisitsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sequence = cls.env.ref("behavioral_email.sequence_page_viewed")
        cls.sequence.write({"state": "draft"})
        cls.start(cls, cls.sequence)

    def triggers(self, partner=None):
        domain = [("trigger_type", "=", "page_viewed")]
        if partner:
            domain.append(("partner_id", "=", partner.id))
        return self.env["behavioral.trigger"].search(domain, order="id")

    def test_category_interest_email(self):
        """Three category visits within the week: a trigger at the third,
        and the next day one email leading back to the last category seen."""
        self.assertTrue(self.env.ref("website_sale.products").track, "category pages are tracked")
        visitor = self.visitor(self.alice)
        self.visit_page(visitor, PLANTERS, NOW)
        self.visit_page(visitor, "/shop/cart", NOW + timedelta(minutes=10))
        self.visit_page(visitor, "/blog/our-news-1", NOW + timedelta(minutes=20))
        self.visit_page(visitor, f"{PLANTERS}?page=2", NOW + timedelta(days=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=5))
        self.assertFalse(self.triggers(), "two matching visits only")

        self.visit_page(visitor, f"/fr{TREES}", NOW + timedelta(days=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, minutes=5))
        trigger = self.triggers()
        self.assertRecordValues(trigger, [{
            "partner_id": self.alice.id, "res_model": "website.visitor", "res_id": visitor.id,
            "occurred_at": NOW + timedelta(days=2), "state": "done",
        }])
        self.assertEqual(trigger.payload["paths"], [f"/fr{TREES}", f"{PLANTERS}?page=2", PLANTERS])
        self.assertEqual(trigger.payload["visit_count"], 3)
        self.assertEqual(trigger.payload["goal_since"][:19], "2026-03-02T09:00:00")
        enrollment = self.enrollments(self.sequence)
        self.assertRecordValues(enrollment, [{
            "partner_id": self.alice.id, "state": "running", "next_due": NOW + timedelta(days=3)}])
        self.assertFalse(self._new_mails, "the email waits a day")

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=1))
        mail = self.assertQueued(self.alice)
        self.assertEqual(mail.subject, "Found what you were looking for?")
        root = lxml.html.fromstring(mail.body_html)
        self.assertEqual(" ".join(root.xpath("//p")[0].text_content().split()), "Hi Alice Customer,")
        self.assertIn("We noticed you have been exploring our collections lately.", root.text_content())
        tracker = self.env["link.tracker"].search([("url", "=like", f"%/fr{TREES}")])
        self.assertEqual(len(tracker), 1, "the button leads back to the last category seen")
        [button] = root.xpath("//a[normalize-space(.) = 'Continue browsing']")
        self.assertEqual(button.get("href"), tracker.short_url)
        [shop] = root.xpath("//a[normalize-space(.) = 'See the whole shop']")
        self.assertEqual(self.tracked_url(shop.get("href")),
                         f"{self.sequence.get_base_url()}/shop")
        self.assertRecordValues(enrollment, [{"state": "done"}])

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=1))
            self.run_crons(NOW + timedelta(days=4))
        self.assertFalse(self._new_mails)
        self.assertEqual(self.triggers(), trigger)

    def test_each_trigger_needs_fresh_visits(self):
        """Visits already signalled do not count again: a customer who keeps
        browsing is signalled once per three new visits."""
        visitor = self.visitor(self.alice)
        for hours in (0, 1, 2):
            self.visit_page(visitor, PLANTERS, NOW + timedelta(hours=hours))
        self.run_crons(NOW + timedelta(hours=2, minutes=5))
        for hours in (3, 4):
            self.visit_page(visitor, PLANTERS, NOW + timedelta(hours=hours))
        self.run_crons(NOW + timedelta(hours=4, minutes=5))
        self.assertEqual(len(self.triggers()), 1)
        self.visit_page(visitor, TREES, NOW + timedelta(hours=5))
        self.run_crons(NOW + timedelta(hours=5, minutes=5))
        _first, second = self.triggers()
        self.assertEqual(second.payload["visit_count"], 3)
        self.assertEqual(second.occurred_at, NOW + timedelta(hours=5))
        self.assertIn("already enrolled", second.state_msg, "the first enrollment still waits for its email")

    def test_visits_must_fall_within_the_window(self):
        visitor = self.visitor(self.alice)
        for days in (0, 4, 8):
            self.visit_page(visitor, PLANTERS, NOW + timedelta(days=days))
        self.run_crons(NOW + timedelta(days=8, minutes=5))
        self.assertFalse(self.triggers())

    def test_order_since_the_first_visit_reaches_the_goal(self):
        visitor = self.visitor(self.alice)
        self.visit_page(visitor, PLANTERS, NOW)
        order = self.make_cart(self.alice, at=NOW + timedelta(hours=1))
        self.confirm(order, NOW + timedelta(hours=1))
        self.visit_page(visitor, PLANTERS, NOW + timedelta(hours=2))
        self.visit_page(visitor, TREES, NOW + timedelta(hours=2))
        self.run_crons(NOW + timedelta(hours=2, minutes=5))
        self.assertIn("goal already reached", self.triggers().state_msg)
        self.assertFalse(self.enrollments(self.sequence))

    def test_unknown_public_and_internal_visitors_never_enroll(self):
        visitors = [self.visitor(), self.visitor(self.public_partner), self.visitor(self.user_marketing.partner_id)]
        for visitor in visitors:
            for hours in (0, 1, 2):
                self.visit_page(visitor, PLANTERS, NOW + timedelta(hours=hours))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=3))
        self.assertFalse(self.triggers())
        self.assertFalse(self._new_mails)

    def test_anonymous_visits_count_once_known(self):
        anonymous = self.visitor()
        self.visit_page(anonymous, PLANTERS, NOW)
        self.visit_page(anonymous, TREES, NOW)
        with freeze_time(NOW + timedelta(minutes=5)):
            anonymous._merge_visitor(self.visitor(self.alice))
        self.visit_page(self.visitor(self.alice), PLANTERS, NOW + timedelta(hours=1))
        self.run_crons(NOW + timedelta(hours=1, minutes=5))
        self.assertEqual(self.triggers().partner_id, self.alice)
        self.assertEqual(self.triggers().payload["visit_count"], 3)

    def test_blocklisted_customer_gets_nothing(self):
        self.env["mail.blacklist"]._add(self.bob.email)
        visitor = self.visitor(self.bob)
        for hours in (0, 1, 2):
            self.visit_page(visitor, PLANTERS, NOW + timedelta(hours=hours))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=3))
        self.assertFalse(self._new_mails)
        self.assertRecordValues(self.enrollments(self.sequence, self.bob), [{
            "state": "exited", "exit_reason": "blacklisted"}])

    def test_pattern_is_a_literal_text_in_the_address(self):
        """Each sequence counts its own pages; LIKE wildcards in the pattern
        are plain characters."""
        news = self.sequence.copy({"page_url_pattern": "/blog/_news", "page_min_visits": 1})
        self.start(news)
        self.visit_page(self.visitor(self.alice), "/blog/xnews-1", NOW)
        self.visit_page(self.visitor(self.bob), "/blog/_news-2", NOW)
        for hours in (0, 1, 2):
            self.visit_page(self.visitor(self.carol), PLANTERS, NOW + timedelta(hours=hours))
        self.run_crons(NOW + timedelta(hours=2, minutes=5), advance=False)
        self.assertEqual(self.enrollments(news).partner_id, self.bob)
        self.assertEqual(self.enrollments(self.sequence).partner_id, self.carol)
        self.assertEqual(self.triggers().partner_id, self.bob | self.carol)

    def test_settings_are_validated(self):
        for pattern in (False, "", "shop/category", "/shop category/", "/shop/\ncategory", "/" + "x" * 300):
            with self.assertRaises(ValidationError), self.env.cr.savepoint():
                self.sequence.write({"page_url_pattern": pattern})
        for field in ("page_min_visits", "page_window_hours"):
            with self.assertRaises(ValidationError), self.env.cr.savepoint():
                self.sequence.write({field: 0})
        # only a page_viewed sequence needs a pattern
        self.cart_sequence.write({"page_url_pattern": False})

    def test_detection_queries_do_not_grow(self):
        """Detecting 20 customers costs the queries of detecting 2."""
        visitors = self.env["res.partner"].create([
            {"name": f"Reader {i}", "email": f"reader{i}@example.com"} for i in range(22)])
        counts = []
        for index, group in enumerate((visitors[:2], visitors[2:])):
            start = NOW + timedelta(days=10 * index)
            for partner in group:
                for hours in (0, 1, 2):
                    self.visit_page(self.visitor(partner), PLANTERS, start + timedelta(hours=hours))
            at = start + timedelta(hours=2, minutes=5)
            with freeze_time(at):
                count, ids = self.count_queries(self.env["behavioral.trigger"]._detect_page_viewed, at)
            self.assertEqual(len(ids), len(group))
            counts.append(count)
        self.assertEqual(counts[0], counts[1], f"detection queries for 2 and 20 customers: {counts}")


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestPageViewedOverHttp(ShopBrowsingCase):
    """A customer browses the shop's category pages for real; website records
    each visit (website.visitor._handle_webpage_dispatch)."""

    # pages are served from a read-only cursor by default in tests, and
    # website does not record visits there (as with a read-only replica)
    readonly_enabled = False

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._init_mail_gateway()
        cls.category = cls.env["product.public.category"].create({"name": "Raised Beds"})
        cls.env["product.product"].create({
            "name": "Cedar Raised Bed", "list_price": 129.0, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)], "public_categ_ids": [(6, 0, cls.category.ids)],
        })
        cls.path = f"/shop/category/{cls.env['ir.http']._slug(cls.category)}"
        cls.alice = mail_new_test_user(
            cls.env, login="reader_alice", password="reader_alice", name="Alice Reader",
            email="alice.reader@example.com", groups="base.group_portal")
        cls.sequence = cls.env.ref("behavioral_email.sequence_page_viewed")
        cls.sequence.write({"state": "draft"})
        cls.env["behavioral.trigger"].search([("state", "=", "new")]).write({"state": "done"})

    def _browse(self, times):
        for _visit in range(times):
            response = self.url_open(self.path)
            self.assertEqual(response.status_code, 200)
            self.assertIn("Cedar Raised Bed", response.text)

    def test_category_visits_over_http(self):
        """An anonymous visitor who never logs in counts for nothing; one who
        browses anonymously, then logs in, is signalled with every visit."""
        self.sequence.action_start()
        # a browser with no session yet: the first visit opens one
        self._browse(2)
        self._login_in_this_session(self.alice)
        self._browse(1)
        visitor = self.env["website.visitor"].search([("partner_id", "=", self.alice.partner_id.id)])
        self.assertEqual(len(visitor.website_track_ids.filtered(lambda t: self.path in (t.url or ""))), 3)
        # another browser, never logging in
        self.authenticate(None, None)
        self._browse(3)
        anonymous = self.env["website.visitor"].search([("partner_id", "=", False), ("id", ">", visitor.id)])
        self.assertEqual(len(anonymous.website_track_ids), 3)

        now = datetime.now()
        with self.mock_mail_gateway():
            self._run_crons(now + timedelta(minutes=5))
            self._run_crons(now + timedelta(minutes=10))
        trigger = self.env["behavioral.trigger"].search([("trigger_type", "=", "page_viewed")])
        self.assertEqual(trigger.partner_id, self.alice.partner_id)
        self.assertEqual(trigger.payload["paths"], [self.path])
        enrollment = self.env["behavioral.enrollment"].search([("sequence_id", "=", self.sequence.id)])
        self.assertEqual(enrollment.partner_id, self.alice.partner_id)

        with self.mock_mail_gateway():
            self._run_crons(now + timedelta(days=1, minutes=5))
            self._run_crons(now + timedelta(days=1, minutes=10))
        mails = self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment")
        self.assertEqual(len(mails), 1)
        self.assertEqual(mails.recipient_ids, self.alice.partner_id)
        self.assertEqual(mails.subject, "Found what you were looking for?")
