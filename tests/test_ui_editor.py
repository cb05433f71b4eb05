"""The mass-mailing editor in a real browser, and the emails at phone width.

A marketer with the User group only edits the shipped cart email, inserts the
recommended products block and starts the sequence; the customer's email then
lists every line of the cart, its total, three available recommended products
and the restore button. Every shipped email is then opened in Chromium at
375 px: nothing may scroll sideways.
"""
import functools
import json
import os
import shutil
import tempfile
import threading
from datetime import timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

from freezegun import freeze_time
from lxml import html

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.tests.common import HttpCase, tagged

from .common import NOW, BehavioralCase


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        return


class ShopMixin:
    """A shop with a sales history, so that there is something to recommend.
    The shop's history, the carts and the crons run at fixed clocks; only the
    browser runs in real time, and nothing in the sequences depends on when
    the marketer started them."""

    @classmethod
    def _build_shop(cls):
        with freeze_time(NOW - timedelta(days=1)):
            cls._build_shop_history()

    @classmethod
    def _build_shop_history(cls):
        env = cls.env
        cls._init_mail_gateway()
        cls.company = env.company
        cls.company.write({"email": "shop@example.com", "street": "12 Garden Lane", "city": "Leafville",
                           "zip": "1000"})
        cls.website = env["website"].browse(1)
        cls.website.cart_abandoned_delay = 1.0

        def products(*names):
            return env["product.product"].create([{
                "name": name, "list_price": 10.0 + index, "sale_ok": True, "is_published": True,
                "type": "consu", "taxes_id": [(5, 0, 0)],
            } for index, name in enumerate(names)])

        cls.cart_products = products(
            "Terracotta Pot", "Olive Tree", "A Very Long Product Name For A Deluxe Ceramic Planter With Drainage")
        cls.extras = products("Potting Soil", "Clay Saucer", "Bamboo Stake", "Garden Gloves")
        cls.extras[1].product_tmpl_id.is_published = False  # never recommended
        buyers = env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"Past Buyer {i}", "email": f"buyer{i}@example.com"} for i in range(4)])
        for buyer, extra in zip(buyers, cls.extras):
            order = env["sale.order"].create({"partner_id": buyer.id, "website_id": cls.website.id, "order_line": [
                (0, 0, {"product_id": cls.cart_products[0].id, "product_uom_qty": 1}),
                (0, 0, {"product_id": extra.id, "product_uom_qty": 1}),
            ]})
            order.action_confirm()
        env["behavioral.product.affinity"]._cron_refresh()
        cls.customer = env["res.partner"].with_context(behavioral_no_capture=True).create(
            {"name": "Alice Shopper", "email": "alice.shopper@example.com"})
        env["behavioral.sequence"].search([("state", "=", "running")]).action_pause()
        cls.cart_sequence = env.ref("behavioral_email.sequence_cart")
        cls.cart_sequence.write({"state": "draft", "cart_idle_hours": 0, "website_id": False})
        env["behavioral.trigger"].search([("state", "=", "new")]).write({"state": "done"})

    def _abandon_cart(self, lines, customer=None):
        with freeze_time(NOW):
            cart = self.env["sale.order"].create({
                "partner_id": (customer or self.customer).id, "website_id": self.website.id,
                "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": qty})
                               for product, qty in lines],
            })
        return cart

    def _run_crons(self, at):
        with freeze_time(at):
            self.env["behavioral.trigger"]._cron_detect()
            self.env["behavioral.trigger"]._cron_enroll()
            self.env["behavioral.enrollment"]._cron_advance()


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestEditorTour(HttpCase, BehavioralCase, ShopMixin):
    test_module = "behavioral_email"
    # tall enough for the whole email and the blocks panel to be on screen
    # while a block is dragged
    browser_size = "1600x2400"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._build_shop()
        cls.marketer = mail_new_test_user(
            cls.env, login="tour_editor", password="tour_editor", name="Edna Editor",
            email="edna@example.com", groups="behavioral_email.group_behavioral_user")

    def test_marketer_edits_and_the_customer_gets_every_line(self):
        self.start_tour("/odoo", "behavioral_email_editor_tour", login="tour_editor", timeout=180)
        step = self.cart_sequence.step_ids.sorted()[0]
        self.assertEqual(self.cart_sequence.state, "running")
        for body in (step.body_arch, step.body_html):
            self.assertIn("Your basket is waiting for you, all of it:", body)
            self.assertIn('data-behavioral-block="recommended_products"', body)
        self.assertNotIn("t-foreach", step.body_html)

        pot, tree, planter = self.cart_products
        cart = self._abandon_cart([(pot, 2), (tree, 1), (planter, 3)])
        with self.mock_mail_gateway():
            self._run_crons(NOW + timedelta(hours=1, minutes=5))
        mail = self._new_mails.filtered(lambda m: self.customer in m.recipient_ids)
        self.assertEqual(len(mail), 1)
        root = html.fromstring(mail.body_html)
        self.assertIn("Your basket is waiting for you, all of it:", root.text_content())
        lines = root.xpath("//img[contains(@src, '/web/image/product.product/') and contains(@src, 'image_128')]"
                           "/ancestor::tr[1]")
        self.assertEqual([line.xpath("string(.//strong)") for line in lines], cart.order_line.mapped("name_short"))
        self.assertIn("Quantity: 3", lines[2].text_content())
        self.assertIn(f"{cart.amount_total:.2f}", mail.body_html)
        [title] = root.xpath("//p[contains(., 'You may also like')]")
        recommended = [card.xpath("string(.//a/span)") for card in title.getnext().xpath("./div")]
        self.assertEqual(recommended, ["Potting Soil", "Bamboo Stake", "Garden Gloves"])
        [button] = root.xpath("//a[contains(., 'Return to my cart')]")
        tracker = self.env["link.tracker"].search([("url", "like", f"access_token={cart.access_token}")])
        self.assertEqual(button.get("href"), tracker.short_url)


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestEmailsAtPhoneWidth(HttpCase, BehavioralCase, ShopMixin):
    """Each shipped email, as queued for a customer, in Chromium at 375 px."""
    test_module = "behavioral_email"
    browser_size = "375x812"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._build_shop()
        # the emails are written to files served by a loopback web server
        # (Chromium refuses file:// pages to the test browser)
        cls.folder = tempfile.mkdtemp()
        handler = functools.partial(QuietHandler, directory=cls.folder)
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=cls.server.serve_forever, daemon=True)
        thread.start()
        cls.addClassCleanup(shutil.rmtree, cls.folder)
        cls.addClassCleanup(thread.join)
        cls.addClassCleanup(cls.server.server_close)
        cls.addClassCleanup(cls.server.shutdown)

    def _assert_fits(self, mail):
        name = f"mail_{mail.id}.html"
        with open(os.path.join(self.folder, name), "w", encoding="utf-8") as file:
            file.write(mail.body_html)
        code = """
            const width = Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);
            if (!document.querySelector(".o_layout")) {
                console.error(`the email did not load: ${location.href}`);
            } else if (window.innerWidth !== 375) {
                console.error(`viewport is ${window.innerWidth} px, not 375`);
            } else if (width > 375) {
                console.error(`%s scrolls sideways: ${width} px wide at 375 px`);
            } else {
                console.log("test successful");
            }
        """ % json.dumps(mail.subject)[1:-1]
        url = f"http://127.0.0.1:{self.server.server_address[1]}/{name}"
        self.browser_js(url, code, ready="document.readyState === 'complete'", timeout=60)

    def test_shipped_emails_fit_a_phone(self):
        order_sequence = self.env.ref("behavioral_email.sequence_order")
        welcome_sequence = self.env.ref("behavioral_email.sequence_welcome")
        sequences = (self.cart_sequence | order_sequence | welcome_sequence
                     | self.env.ref("behavioral_email.sequence_invoice_paid")
                     | self.env.ref("behavioral_email.sequence_trial_started"))
        sequences.action_start()
        pot, tree, planter = self.cart_products
        self._abandon_cart([(pot, 2), (tree, 1), (planter, 3)])
        buyer = self.env["res.partner"].with_context(behavioral_no_capture=True).create(
            {"name": "Bruno Buyer", "email": "bruno@example.com"})
        order = self._abandon_cart([(planter, 1), (tree, 2)], customer=buyer)
        with freeze_time(NOW):
            order.action_confirm()
            invoice = order._create_invoices()
            invoice.action_post()
            self.env["account.payment.register"].with_context(
                active_model="account.move", active_ids=invoice.ids).create({})._create_payments()
            nina = self.env["res.partner"].create({"name": "Nina Newcomer", "email": "nina@example.com"})
            self.env["behavioral.trigger"]._capture_custom_event(
                "trial_started", nina, {"plan": "Professional Gardener Unlimited Annual Membership", "trial_days": 14})
        mails = self.env["mail.mail"]
        start = NOW + timedelta(hours=1, minutes=5)
        with self.mock_mail_gateway():
            for day in (0, 1, 3, 4, 15):
                self._run_crons(start + timedelta(days=day))
            mails = self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment")
        self.assertEqual(len(mails), 12, mails.mapped("subject"))
        for mail in mails:
            self._assert_fits(mail)
