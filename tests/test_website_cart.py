"""End to end through the real shop: a logged-in customer fills a cart with
website_sale's own routes, leaves, and the crons recover it."""
from datetime import datetime, timedelta
from urllib.parse import urlparse

from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.tests.common import HttpCase, tagged

from .common import BehavioralCase


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestWebsiteCart(HttpCase, BehavioralCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._init_mail_gateway()
        cls.website = cls.env["website"].browse(1)
        cls.website.cart_abandoned_delay = 1.0
        cls.product = cls.env["product.product"].create({
            "name": "Watering Can", "list_price": 24.0, "sale_ok": True,
            "is_published": True, "type": "consu", "taxes_id": [(5, 0, 0)],
        })
        cls.alice = mail_new_test_user(
            cls.env, login="shopper_alice", password="shopper_alice", name="Alice Shopper",
            email="alice.shopper@example.com", groups="base.group_portal")
        cls.bob = mail_new_test_user(
            cls.env, login="shopper_bob", password="shopper_bob", name="Bob Shopper",
            email="bob.shopper@example.com", groups="base.group_portal")
        cls.sequence = cls.env.ref("behavioral_email.sequence_cart")
        cls.sequence.write({"state": "draft", "cart_idle_hours": 0, "website_id": False})
        cls.env["behavioral.trigger"].search([("state", "=", "new")]).write({"state": "done"})

    def _fill_cart(self, user, qty):
        self.authenticate(user.login, user.login)
        self.make_jsonrpc_request("/shop/cart/update_json", {"product_id": self.product.id, "add_qty": qty})
        self.logout()
        return self.env["sale.order"].search([
            ("partner_id", "=", user.partner_id.id), ("website_id", "=", self.website.id), ("state", "=", "draft"),
        ])

    def test_real_cart_recovered(self):
        self.sequence.action_start()
        self.env["mail.blacklist"]._add(self.bob.email)
        cart = self._fill_cart(self.alice, 3)
        self._fill_cart(self.bob, 1)
        self.assertEqual(len(cart), 1)
        self.assertEqual(cart.order_line.product_uom_qty, 3)
        self.assertTrue(cart.behavioral_cart_activity)
        idle = datetime.now() + timedelta(hours=1, minutes=5)

        with self.mock_mail_gateway(), freeze_time(idle):
            for _tick in range(2):
                self.env["behavioral.trigger"]._cron_detect()
                self.env["behavioral.trigger"]._cron_enroll()
                self.env["behavioral.enrollment"]._cron_advance()
        mails = self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment")
        self.assertEqual(len(mails), 1, "exactly one email, and none for the blocklisted customer")
        self.assertEqual(mails.recipient_ids, self.alice.partner_id)
        self.assertIn("Watering Can", mails.body_html)
        self.assertIn("Hi Alice,", mails.body_html)
        bob_enrollment = self.env["behavioral.enrollment"].search([("partner_id", "=", self.bob.partner_id.id)])
        self.assertEqual(bob_enrollment.trace_ids.failure_type, "mail_bl")

        # the restore link, clicked from the email in a fresh browser session,
        # brings the cart back
        tracker = self.env["link.tracker"].search([("url", "like", f"access_token={cart.access_token}")])
        self.assertIn(tracker.short_url, mails.body_html)
        response = self.url_open(urlparse(tracker.short_url).path)
        self.assertEqual(response.status_code, 200)
        self.assertIn("/shop/cart", response.url)
        self.assertIn("Watering Can", response.text)
        self.assertEqual(tracker.count, 1, "the click is counted")

    def test_one_click_unsubscribe_stops_the_series(self):
        """The List-Unsubscribe URL of a sent email, posted as a mail client
        does (RFC 8058), blocklists the address and the next email is canceled."""
        self.sequence.action_start()
        self._fill_cart(self.alice, 1)
        idle = datetime.now() + timedelta(hours=1, minutes=5)
        with self.mock_mail_gateway(), freeze_time(idle):
            self.env["behavioral.trigger"]._cron_detect()
            self.env["behavioral.trigger"]._cron_enroll()
            self.env["behavioral.enrollment"]._cron_advance()
            mail = self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment")
            mail.send()
        self.assertEqual(len(self._mails), 1)
        header = self._mails[0]["headers"]["List-Unsubscribe"]
        url = urlparse(header.strip("<>"))
        response = self.url_open(f"{url.path}?{url.query}", data={"List-Unsubscribe": "One-Click"})
        self.assertEqual(response.status_code, 200)
        self.assertTrue(self.env["mail.blacklist"].search([("email", "=", "alice.shopper@example.com")]))

        with self.mock_mail_gateway(), freeze_time(idle + timedelta(days=1, minutes=5)):
            self.env["behavioral.enrollment"]._cron_advance()
        self.assertFalse(self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment"))
        enrollment = self.env["behavioral.enrollment"].search([("partner_id", "=", self.alice.partner_id.id)])
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "blacklisted"}])
