"""Trigger kind ``price_drop`` (bridge behavioral_email_product_alerts): the
sales price of a product customers viewed, carted or wishlisted is lowered
by at least the sequence's minimum. Skipped where the bridge is not
installed. Prices are changed in the product form (odoo.tests.Form) by a
sales manager; the HTTP case records interest through the shop's pages."""
from datetime import datetime, timedelta
from unittest.mock import patch

import lxml.html
from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import ValidationError
from odoo.tests import Form
from odoo.tests.common import tagged

from .common import NOW
from .product_alerts_common import ProductAlertsCommon, ProductAlertsShopCase


class TestPriceDrop(ProductAlertsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.manager = mail_new_test_user(
            cls.env, login="price_manager", name="Paula Pricing", email="paula@example.com",
            groups="base.group_user,sales_team.group_sale_manager")
        cls.bench = cls.env["product.product"].create({
            "name": "Stone Bench", "list_price": 200.0, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        })
        cls.sequence = cls.env.ref("behavioral_email_product_alerts.sequence_price_drop")
        cls.sequence.write({"state": "draft"})
        cls.start(cls, cls.sequence)
        cls.step = cls.sequence.step_ids

    def triggers(self, partner=None):
        return super().triggers("price_drop", partner)

    def set_price(self, product, price, at=NOW):
        """The sales manager changes the sales price in the product form."""
        with freeze_time(at):
            with Form(product.product_tmpl_id.with_user(self.manager)) as form:
                form.list_price = price
        self.assertEqual(product.lst_price, price)

    def test_price_drop_emails_each_interested_customer(self):
        """From 200 to 170 (15 %): Alice viewed the bench, Bob has it on his
        wishlist, Carol in her cart; each gets one email with the new price
        and the old one struck through. Reruns add nothing."""
        self.view_product(self.visitor(self.alice), self.bench, NOW - timedelta(days=3))
        self.wish(self.bob, self.bench, NOW - timedelta(days=50))
        self.make_cart(self.carol, [(self.bench, 1)], at=NOW - timedelta(hours=5))
        self.set_price(self.bench, 170.0)

        triggers = self.triggers()
        self.assertEqual(triggers.partner_id, self.alice | self.bob | self.carol)
        trigger = self.triggers(self.alice)
        self.assertRecordValues(trigger, [{
            "res_model": "product.product", "res_id": self.bench.id, "occurred_at": NOW, "state": "new",
            "dedupe_key": f"price_drop:{self.bench.id}:20260302090000:200.0:170.0:{self.alice.id}",
        }])
        self.assertEqual(trigger.payload["product_ids"], [self.bench.id])
        self.assertEqual((trigger.payload["old_price"], trigger.payload["new_price"]), (200.0, 170.0))
        self.assertEqual(trigger.payload["drop_percent"], 15.0)
        self.assertEqual(trigger.payload["interest"], ["viewed"])

        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertEqual(len(self._new_mails), 3)
        self.assertQueued(self.bob, sequence=self.sequence)
        self.assertQueued(self.carol, sequence=self.sequence)
        mail = self.assertQueued(self.alice, sequence=self.sequence)
        self.assertEqual(mail.subject, "Price drop: Stone Bench now costs less")
        body = mail.body_html
        self.assertIn("Hi Alice,", body)
        self.assertIn("Stone Bench", body)
        root = lxml.html.fromstring(body)
        [old] = root.xpath("//span[contains(@style, 'line-through')]")
        self.assertIn("200.00", old.text_content())
        self.assertIn("170.00", body)
        self.assertIn("-15 %", " ".join(root.text_content().split()))
        self.assertNotIn("In stock again", body)
        self.assertIn(f"/web/image/product.product/{self.bench.id}/image_256", body)
        tracker = self.env["link.tracker"].search([
            ("url", "=like", f"%{self.bench.website_url}"), ("mass_mailing_id", "=", self.step.mailing_id.id)],
            limit=1)
        self.assertIn(tracker.short_url, body)
        self.assert_reruns_add_nothing(NOW + timedelta(minutes=2), NOW + timedelta(days=2))

    def test_small_drop_or_rise_adds_nothing(self):
        """5 % less or more expensive: nothing. Then 10 % less: a trigger."""
        self.wish(self.alice, self.bench, NOW - timedelta(days=1))
        self.set_price(self.bench, 190.0)
        self.set_price(self.bench, 250.0, at=NOW + timedelta(minutes=1))
        self.assertFalse(self.triggers())
        self.set_price(self.bench, 225.0, at=NOW + timedelta(minutes=2))
        self.assertEqual(self.triggers().payload["drop_percent"], 10.0)
        self.assertEqual(self.triggers().payload["old_price"], 250.0)

    def test_minimum_of_each_sequence(self):
        """A 15 % drop enrolls in the 10 % sequence, not in a 20 % one; a
        25 % drop in both. Two products: two enrollments."""
        deep = self.sequence.copy({"price_drop_min_percent": 20, "name": "Big price drop"})
        self.start(deep)
        self.wish(self.alice, self.bench, NOW - timedelta(days=1))
        self.wish(self.alice, self.tree, NOW - timedelta(days=1))
        self.set_price(self.bench, 170.0)
        self.set_price(self.tree, 60.0)
        self.run_crons(NOW + timedelta(minutes=1), advance=False)
        self.assertEqual(set(self.enrollments(self.sequence).mapped("res_id")), {self.bench.id, self.tree.id})
        self.assertEqual(self.enrollments(deep).mapped("res_id"), [self.tree.id])

    def test_unknown_public_and_internal_visitors_never_enroll(self):
        no_email = self.env["res.partner"].create({"name": "No Email"})
        for visitor in (self.visitor(), self.visitor(self.public_partner),
                        self.visitor(self.internal_partner), self.visitor(no_email)):
            self.view_product(visitor, self.bench, NOW - timedelta(hours=3))
        self.wish(False, self.bench, NOW - timedelta(hours=2))  # a guest's wishlist
        self.make_cart(self.public_partner, [(self.bench, 1)], at=NOW - timedelta(hours=1))
        with self.mock_queue():
            self.set_price(self.bench, 100.0)
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self.triggers())
        self.assertFalse(self._new_mails)

    def test_blocklisted_customer_gets_nothing(self):
        self.env["mail.blacklist"]._add(self.bob.email)
        self.view_product(self.visitor(self.bob), self.bench, NOW - timedelta(days=1))
        with self.mock_queue():
            self.set_price(self.bench, 150.0)
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._new_mails)
        enrollment = self.enrollments(self.sequence, self.bob)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertEqual(enrollment.trace_ids.failure_type, "mail_bl")

    def test_ordered_product_is_no_news(self):
        """Alice bought the bench after looking at it: no trigger. Carol buys
        it between the price change and the enrollment: goal already met."""
        self.view_product(self.visitor(self.alice), self.bench, NOW - timedelta(days=2))
        self.order(self.alice, self.bench, NOW - timedelta(days=1))
        self.wish(self.carol, self.bench, NOW - timedelta(days=2))
        self.set_price(self.bench, 150.0)
        self.assertEqual(self.triggers().partner_id, self.carol)
        self.order(self.carol, self.bench, NOW + timedelta(minutes=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=2))
        self.assertFalse(self._new_mails)
        self.assertIn("goal already reached", self.triggers(self.carol).state_msg)

    def test_outside_the_windows(self):
        self.view_product(self.visitor(self.alice), self.bench, NOW - timedelta(days=31))
        self.view_product(self.visitor(self.bob), self.bench, NOW - timedelta(days=1))
        self.set_price(self.bench, 150.0)
        self.assertEqual(self.triggers().partner_id, self.bob)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=25))
        self.assertFalse(self._new_mails)
        self.assertIn("older than the entry window", self.triggers(self.bob).state_msg)

    def test_price_back_up_before_the_email(self):
        """The price went back up before the email was due: nothing to tell."""
        self.wish(self.alice, self.bench, NOW - timedelta(days=1))
        self.set_price(self.bench, 150.0)
        self.run_crons(NOW, advance=False)
        self.set_price(self.bench, 200.0, at=NOW + timedelta(seconds=30))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._new_mails)
        trace = self.enrollments(self.sequence, self.alice).trace_ids
        self.assertRecordValues(trace, [{"state": "skipped"}])
        self.assertIn("back to its old price", trace.state_msg)

    def test_no_capture_without_a_running_sequence(self):
        self.sequence.action_pause()
        self.wish(self.alice, self.bench, NOW - timedelta(days=1))
        self.set_price(self.bench, 100.0)
        self.assertFalse(self.triggers())

    def test_settings_are_validated(self):
        for value in (0, -5, 100):
            with self.assertRaises(ValidationError), self.env.cr.savepoint():
                self.sequence.price_drop_min_percent = value
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.sequence.alert_lookback_days = 0

    def test_capture_queries_do_not_grow(self):
        """Recording a lower price costs the same queries for 2 and for 20
        interested customers: one statement inserts their triggers."""
        shoppers = self.env["res.partner"].create([
            {"name": f"Shopper {i}", "email": f"shopper{i}@example.com"} for i in range(22)])
        products = self.env["product.product"].create([{
            "name": f"Bench {i}", "list_price": 100.0, "sale_ok": True, "is_published": True, "type": "consu",
        } for i in range(2)])
        counts = []
        for product, group in zip(products, (shoppers[:2], shoppers[2:])):
            for partner in group:
                self.wish(partner, product, NOW - timedelta(days=1))
            template = product.product_tmpl_id.with_user(self.manager)
            with freeze_time(NOW):
                counts.append(self.count_capture_queries(
                    "product.template", "_behavioral_capture_price_drop", template.write, {"list_price": 80.0}))
            self.assertEqual(len(self.triggers().filtered(lambda t, p=product: t.res_id == p.id)), len(group))
        self.assertEqual(counts[0], counts[1], f"price change queries for 2 and 20 customers: {counts}")

    def test_capture_failure_never_breaks_the_form(self):
        self.wish(self.alice, self.bench, NOW - timedelta(days=1))
        Trigger = type(self.env["behavioral.trigger"])
        with patch.object(Trigger, "_capture_price_drop", side_effect=RuntimeError("boom")), \
                self.assertLogs("odoo.addons.behavioral_email_product_alerts.models.product_template", "ERROR"):
            self.set_price(self.bench, 150.0)
        self.assertEqual(self.bench.lst_price, 150.0)
        self.assertFalse(self.triggers())


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestPriceDropOverHttp(ProductAlertsShopCase):
    """Customers put a product on their wishlist in the real shop; then its
    price is lowered in the product form."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.lantern = cls.env["product.product"].create({
            "name": "Garden Lantern", "list_price": 50.0, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        })
        cls.alice = mail_new_test_user(
            cls.env, login="drop_alice", password="drop_alice", name="Alice Bargain",
            email="alice.bargain@example.com", groups="base.group_portal")
        cls.bob = mail_new_test_user(
            cls.env, login="drop_bob", password="drop_bob", name="Bob Bargain",
            email="bob.bargain@example.com", groups="base.group_portal")
        cls.manager = mail_new_test_user(
            cls.env, login="drop_manager", name="Paula Pricing", email="paula.pricing@example.com",
            groups="base.group_user,sales_team.group_sale_manager")
        cls.sequence = cls.env.ref("behavioral_email_product_alerts.sequence_price_drop")
        cls.sequence.write({"state": "draft"})
        cls.env["behavioral.trigger"].search([("state", "=", "new")]).write({"state": "done"})

    def test_price_drop_emails_the_customer_only(self):
        self.sequence.action_start()
        self.env["mail.blacklist"]._add(self.bob.email)
        self.authenticate(self.alice.login, self.alice.login)
        self.press_wishlist(self.lantern)
        self.authenticate(self.bob.login, self.bob.login)
        self.press_wishlist(self.lantern)
        self.authenticate(None, None)  # an anonymous visitor, never logging in
        self.press_wishlist(self.lantern)
        self.logout()
        wishes = self.env["product.wishlist"].search([("product_id", "=", self.lantern.id)])
        self.assertEqual(len(wishes), 3)
        self.assertEqual(len(wishes.filtered(lambda w: not w.partner_id)), 1)

        with Form(self.lantern.product_tmpl_id.with_user(self.manager)) as form:
            form.list_price = 40.0
        later = datetime.now() + timedelta(minutes=1)
        with self.mock_mail_gateway():
            self._run_crons(later)
            # every cron again: nothing new
            self._run_crons(later)
            self._run_crons(later + timedelta(hours=1))
        triggers = self.env["behavioral.trigger"].search([("trigger_type", "=", "price_drop")])
        self.assertEqual(triggers.partner_id, self.alice.partner_id | self.bob.partner_id)
        mail = self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment")
        self.assertEqual(len(mail), 1, "one email, to Alice: Bob is blocklisted, the anonymous visitor unknown")
        self.assertEqual(mail.recipient_ids, self.alice.partner_id)
        self.assertEqual(mail.subject, "Price drop: Garden Lantern now costs less")
        root = lxml.html.fromstring(mail.body_html)
        [old] = root.xpath("//span[contains(@style, 'line-through')]")
        self.assertIn("50.00", old.text_content())
        self.assertIn("40.00", mail.body_html)
        self.assertIn("-20 %", " ".join(root.text_content().split()))
        enrollments = self.env["behavioral.enrollment"].search([("sequence_id", "=", self.sequence.id)])
        self.assertEqual(enrollments.filtered(lambda e: e.partner_id == self.bob.partner_id).exit_reason,
                         "blacklisted")
