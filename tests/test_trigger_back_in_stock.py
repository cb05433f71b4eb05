"""Trigger kind ``back_in_stock`` (bridge behavioral_email_product_alerts):
a product customers viewed, carted, wishlisted or asked about is received
and can be bought again. Skipped where the bridge is not installed.

The bulk of the cases record interest through Odoo's own paths
(``website.visitor._add_viewed_product``, ``product.wishlist._add_to_wishlist``)
at fixed clocks and validate real receipts; the HTTP case goes through the
shop's pages and routes as a logged-in customer and an anonymous visitor."""
from datetime import datetime, timedelta
from unittest.mock import patch

from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import ValidationError
from odoo.tests.common import tagged

from .common import NOW
from .product_alerts_common import ProductAlertsCommon, ProductAlertsShopCase


class TestBackInStock(ProductAlertsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.sequence = cls.env.ref("behavioral_email_product_alerts.sequence_back_in_stock")
        cls.sequence.write({"state": "draft"})
        cls.start(cls, cls.sequence)
        cls.step = cls.sequence.step_ids

    def triggers(self, partner=None):
        return super().triggers("back_in_stock", partner)

    def test_restock_emails_each_interested_customer(self):
        """Alice viewed it, Bob put it on his wishlist two months ago, Carol
        left it in her cart: the receipt sends each of them one email about
        it; reruns add nothing."""
        self.view_product(self.visitor(self.alice), self.agave, NOW - timedelta(days=2))
        self.view_product(self.visitor(self.alice), self.pot, NOW - timedelta(days=2))
        self.wish(self.bob, self.agave, NOW - timedelta(days=60))
        self.make_cart(self.carol, [(self.agave, 1)], at=NOW - timedelta(days=1))
        picking = self.receive(self.agave, 5, NOW)

        triggers = self.triggers()
        self.assertEqual(triggers.partner_id, self.alice | self.bob | self.carol)
        alice_trigger = self.triggers(self.alice)
        self.assertRecordValues(alice_trigger, [{
            "res_model": "product.product", "res_id": self.agave.id, "occurred_at": NOW, "state": "new",
            "company_id": self.company.id,
            "dedupe_key": f"back_in_stock:{self.agave.id}:{picking.move_ids.id}:{self.alice.id}",
        }])
        self.assertEqual(alice_trigger.payload["product_ids"], [self.agave.id])
        self.assertEqual(alice_trigger.payload["interest"], ["viewed"])
        self.assertEqual(alice_trigger.payload["website_id"], self.website.id)
        self.assertEqual(alice_trigger.payload["free_qty"], 5)
        self.assertEqual(self.triggers(self.bob).payload["interest"], ["wishlisted"])
        self.assertEqual(self.triggers(self.carol).payload["interest"], ["carted"])

        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        for partner in (self.bob, self.carol):
            self.assertQueued(partner, sequence=self.sequence)
        mail = self.assertQueued(self.alice, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 3)
        self.assertEqual(mail.subject, "Good news: Blue Agave is back in stock")
        body = mail.body_html
        self.assertIn("Hi Alice,", body)
        self.assertIn("Blue Agave", body)
        self.assertIn("30.00", body)
        self.assertIn("In stock again", body)
        self.assertIn(f"/web/image/product.product/{self.agave.id}/image_256", body)
        self.assertNotIn("line-through", body, "no old price after a restock")
        self.assertNotIn("Terracotta Pot", body)
        trackers = self.env["link.tracker"].search([
            ("url", "=like", f"%{self.agave.website_url}"), ("mass_mailing_id", "=", self.step.mailing_id.id)])
        self.assertTrue(trackers, "the product link is tracked")
        self.assertIn(trackers[0].short_url, body)
        self.assertIn("/unsubscribe_from_list", body)
        self.assertRecordValues(self.enrollments(self.sequence, self.alice), [{
            "state": "done", "res_model": "product.product", "res_id": self.agave.id, "goal_since": NOW}])
        self.assert_reruns_add_nothing(NOW + timedelta(minutes=2), NOW + timedelta(days=3))

    def test_only_a_product_coming_back_counts(self):
        """A product sold even when out of stock is never "back"; more stock
        for a product already available is no restock."""
        fern = self.env["product.product"].create({
            "name": "Boston Fern", "list_price": 15.0, "sale_ok": True, "is_published": True,
            "type": "consu", "is_storable": True, "allow_out_of_stock_order": True,
        })
        visitor = self.visitor(self.alice)
        self.view_product(visitor, fern, NOW - timedelta(days=1))
        self.view_product(visitor, self.agave, NOW - timedelta(days=1))
        self.receive(fern, 4, NOW)
        self.assertFalse(self.triggers())
        self.receive(self.agave, 2, NOW + timedelta(minutes=5))
        self.assertEqual(len(self.triggers()), 1)
        self.receive(self.agave, 3, NOW + timedelta(minutes=10))
        self.assertEqual(len(self.triggers()), 1, "already in stock: no new trigger")

    def test_inventory_adjustment_counts_too(self):
        """Stock found in a count and applied (Physical Inventory) brings the
        product back."""
        self.wish(self.alice, self.agave, NOW - timedelta(days=1))
        with freeze_time(NOW):
            quant = self.env["stock.quant"].with_context(inventory_mode=True).create({
                "product_id": self.agave.id, "location_id": self.warehouse.lot_stock_id.id,
                "inventory_quantity": 4,
            })
            quant.action_apply_inventory()
        self.assertEqual(self.agave.qty_available, 4)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertEqual(self.triggers().payload["free_qty"], 4)
        self.assertIn("Blue Agave", self.assertQueued(self.alice).body_html)

    def test_new_restock_after_selling_out(self):
        """Sold out again, then received again: a new trigger, refused by the
        shipped re-entry rule (once per product and customer)."""
        self.wish(self.alice, self.agave, NOW - timedelta(days=1))
        self.receive(self.agave, 1, NOW)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(self.alice)
        quant = self.env["stock.quant"].search([
            ("product_id", "=", self.agave.id), ("location_id", "=", self.warehouse.lot_stock_id.id)])
        with freeze_time(NOW + timedelta(days=1)):
            quant.inventory_quantity = 0
            quant.action_apply_inventory()
        self.receive(self.agave, 2, NOW + timedelta(days=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, minutes=1))
        self.assertFalse(self._new_mails)
        first, second = self.triggers()
        self.assertNotEqual(first.dedupe_key, second.dedupe_key)
        self.assertIn("already enrolled", second.state_msg)

    def test_unknown_public_and_internal_visitors_never_enroll(self):
        no_email = self.env["res.partner"].create({"name": "No Email"})
        for visitor in (self.visitor(), self.visitor(self.public_partner),
                        self.visitor(self.internal_partner), self.visitor(no_email)):
            self.view_product(visitor, self.agave, NOW - timedelta(hours=3))
        self.wish(False, self.agave, NOW - timedelta(hours=2))  # a guest's wishlist
        self.make_cart(self.public_partner, [(self.agave, 1)], at=NOW - timedelta(hours=1))
        with self.mock_queue():
            self.receive(self.agave, 5, NOW)
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self.triggers())
        self.assertFalse(self._new_mails)

    def test_blocklisted_customer_gets_nothing(self):
        self.env["mail.blacklist"]._add(self.bob.email)
        self.wish(self.bob, self.agave, NOW - timedelta(days=1))
        with self.mock_queue():
            self.receive(self.agave, 5, NOW)
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._new_mails)
        enrollment = self.enrollments(self.sequence, self.bob)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertEqual(enrollment.trace_ids.failure_type, "mail_bl")

    def test_ordered_product_is_no_news(self):
        """Alice ordered it after viewing it: no trigger. Carol orders it
        between the restock and the enrollment: her goal is already met."""
        self.view_product(self.visitor(self.alice), self.agave, NOW - timedelta(days=2))
        self.order(self.alice, self.agave, NOW - timedelta(days=1))
        self.view_product(self.visitor(self.carol), self.agave, NOW - timedelta(days=2))
        self.receive(self.agave, 5, NOW)
        self.assertEqual(self.triggers().partner_id, self.carol)
        self.order(self.carol, self.agave, NOW + timedelta(minutes=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=2))
        self.assertFalse(self._new_mails)
        self.assertFalse(self.enrollments(self.sequence))
        self.assertIn("goal already reached", self.triggers(self.carol).state_msg)

    def test_outside_the_windows(self):
        """A view older than the interest window is forgotten; a restock the
        enrollment cron first sees after the entry window emails nobody."""
        self.view_product(self.visitor(self.alice), self.agave, NOW - timedelta(days=31))
        self.view_product(self.visitor(self.bob), self.agave, NOW - timedelta(days=29))
        self.receive(self.agave, 5, NOW)
        self.assertEqual(self.triggers().partner_id, self.bob)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=25))
        self.assertFalse(self._new_mails)
        self.assertIn("older than the entry window", self.triggers(self.bob).state_msg)

    def test_interest_window_of_each_sequence(self):
        """A sequence with a 7-day window leaves out a view of 10 days ago
        that the 30-day one takes; a wishlist counts for both."""
        short = self.sequence.copy({"alert_lookback_days": 7, "name": "Back in stock (recent views)"})
        self.start(short)
        self.view_product(self.visitor(self.alice), self.agave, NOW - timedelta(days=10))
        self.wish(self.bob, self.agave, NOW - timedelta(days=90))
        self.receive(self.agave, 5, NOW)
        self.run_crons(NOW + timedelta(minutes=1), advance=False)
        self.assertEqual(self.enrollments(self.sequence).partner_id, self.alice | self.bob)
        self.assertEqual(self.enrollments(short).partner_id, self.bob)

    def test_notify_me_request_handed_over(self):
        """Carol asked the product page to tell her: the sequence does, and
        website_sale_stock's own availability email is not sent to her as
        well. A request the sequence does not take (an internal user's) keeps
        Odoo's email."""
        for partner in (self.carol, self.internal_partner):
            # what /shop/add/stock_notification does
            self.agave.sudo().stock_notification_partner_ids += partner
        with self.mock_queue():
            self.receive(self.agave, 5, NOW)
            self.run_crons(NOW + timedelta(minutes=1))
            with freeze_time(NOW + timedelta(minutes=30)):
                self.env["product.product"]._send_availability_email()
        self.assertEqual(self.triggers().payload["interest"], ["notify"])
        self.assertEqual(self.assertQueued(self.carol).subject, "Good news: Blue Agave is back in stock")
        odoo_emails = self._new_mails.filtered(lambda m: m.model != "behavioral.enrollment")
        self.assertEqual(len(odoo_emails), 1)
        self.assertIn("mia@example.com", odoo_emails.email_to)
        self.assertFalse(self.agave.stock_notification_partner_ids)

    def test_notify_me_request_kept_when_refused(self):
        """A request whose customer the sequence's filter leaves out stays
        Odoo's: website_sale_stock's own email still tells her."""
        self.sequence.write({"state": "draft"})
        self.sequence.partner_domain = repr([("id", "!=", self.carol.id)])
        self.sequence.action_start()
        self.agave.sudo().stock_notification_partner_ids += self.carol
        with self.mock_queue():
            self.receive(self.agave, 5, NOW)
            self.run_crons(NOW + timedelta(minutes=1))
            with freeze_time(NOW + timedelta(minutes=30)):
                self.env["product.product"]._send_availability_email()
        self.assertEqual(self.triggers(self.carol).payload["interest"], ["notify"])
        self.assertFalse(self.enrollments(self.sequence))
        self.assertQueued(self.carol, count=0)
        [odoo_email] = self._new_mails.filtered(lambda m: m.model != "behavioral.enrollment")
        self.assertIn(self.carol.email, odoo_email.email_to)

    def test_no_capture_without_a_running_sequence(self):
        """Nothing is recorded while no back in stock sequence runs, and the
        Notify me requests stay Odoo's."""
        self.sequence.action_pause()
        self.wish(self.alice, self.agave, NOW - timedelta(days=1))
        self.agave.sudo().stock_notification_partner_ids += self.carol
        self.receive(self.agave, 5, NOW)
        self.assertFalse(self.triggers())
        self.assertEqual(self.agave.stock_notification_partner_ids, self.carol)

    def test_sold_out_again_before_the_email(self):
        self.wish(self.alice, self.agave, NOW - timedelta(days=1))
        self.receive(self.agave, 1, NOW)
        self.run_crons(NOW, advance=False)
        enrollment = self.enrollments(self.sequence, self.alice)
        self.assertEqual(enrollment.state, "running")
        self.order(self.bob, self.agave, NOW)
        quant = self.env["stock.quant"].search([
            ("product_id", "=", self.agave.id), ("location_id", "=", self.warehouse.lot_stock_id.id)])
        self.assertEqual(quant.reserved_quantity, 1, "Bob's order took the last one")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._new_mails)
        self.assertRecordValues(enrollment.trace_ids, [{"state": "skipped"}])
        self.assertIn("sold out again", enrollment.trace_ids.state_msg)

    def test_settings_are_validated(self):
        with self.assertRaises(ValidationError), self.env.cr.savepoint():
            self.sequence.alert_lookback_days = 0

    def test_capture_queries_do_not_grow(self):
        """Capturing a restock in the receipt's validation costs the same
        queries for 2 and for 20 interested customers: one statement inserts
        their triggers."""
        shoppers = self.env["res.partner"].create([
            {"name": f"Shopper {i}", "email": f"shopper{i}@example.com"} for i in range(22)])
        products = self.env["product.product"].create([{
            "name": f"Agave {i}", "list_price": 10.0, "sale_ok": True, "is_published": True,
            "type": "consu", "is_storable": True, "allow_out_of_stock_order": False,
        } for i in range(2)])
        counts = []
        for product, group in zip(products, (shoppers[:2], shoppers[2:])):
            for partner in group:
                self.wish(partner, product, NOW - timedelta(days=1))
            with freeze_time(NOW):
                picking = self.receipt(product, 5)
                counts.append(self.count_capture_queries(
                    "stock.move", "_behavioral_capture_restock", picking.button_validate))
            self.assertEqual(picking.state, "done")
            self.assertEqual(len(self.triggers().filtered(lambda t, p=product: t.res_id == p.id)), len(group))
        self.assertEqual(counts[0], counts[1], f"receipt queries for 2 and 20 customers: {counts}")

    def test_capture_failure_never_breaks_the_receipt(self):
        self.wish(self.alice, self.agave, NOW - timedelta(days=1))
        Trigger = type(self.env["behavioral.trigger"])
        with patch.object(Trigger, "_capture_back_in_stock", side_effect=RuntimeError("boom")), \
                self.assertLogs("odoo.addons.behavioral_email_product_alerts.models.stock_move", "ERROR"):
            self.receive(self.agave, 5, NOW)
        self.assertEqual(self.agave.qty_available, 5)
        self.assertFalse(self.triggers())


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestBackInStockOverHttp(ProductAlertsShopCase):
    """Customers look at a sold-out product in the real shop and put it on
    their wishlist; then the receipt arrives."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.agave = cls.env["product.product"].create({
            "name": "Variegated Agave", "list_price": 42.0, "sale_ok": True, "is_published": True,
            "type": "consu", "is_storable": True, "allow_out_of_stock_order": False, "taxes_id": [(5, 0, 0)],
        })
        cls.alice = mail_new_test_user(
            cls.env, login="stock_alice", password="stock_alice", name="Alice Waiting",
            email="alice.waiting@example.com", groups="base.group_portal")
        cls.bob = mail_new_test_user(
            cls.env, login="stock_bob", password="stock_bob", name="Bob Waiting",
            email="bob.waiting@example.com", groups="base.group_portal")
        cls.warehouse = cls.env["stock.warehouse"].search([("company_id", "=", cls.env.company.id)], limit=1)
        cls.sequence = cls.env.ref("behavioral_email_product_alerts.sequence_back_in_stock")
        cls.sequence.write({"state": "draft"})
        cls.env["behavioral.trigger"].search([("state", "=", "new")]).write({"state": "done"})

    def _view_and_wish(self):
        """Press the wishlist button on the product page, and report the view
        as the page's script does."""
        product_id = self.press_wishlist(self.agave)
        self.make_jsonrpc_request("/shop/products/recently_viewed_update", {"product_id": product_id})

    def _receive(self, qty):
        picking = self.env["stock.picking"].create({
            "picking_type_id": self.warehouse.in_type_id.id,
            "move_ids": [(0, 0, {
                "name": self.agave.name, "product_id": self.agave.id, "product_uom_qty": qty,
                "product_uom": self.agave.uom_id.id,
                "location_id": self.warehouse.in_type_id.default_location_src_id.id,
                "location_dest_id": self.warehouse.lot_stock_id.id,
            })],
        })
        picking.action_confirm()
        picking.move_ids.quantity = qty
        picking.move_ids.picked = True
        picking.button_validate()
        self.assertEqual(picking.state, "done")

    def test_restock_emails_the_customer_only(self):
        self.sequence.action_start()
        self.env["mail.blacklist"]._add(self.bob.email)
        self.authenticate(self.alice.login, self.alice.login)
        self._view_and_wish()
        self.authenticate(self.bob.login, self.bob.login)
        self._view_and_wish()
        self.authenticate(None, None)  # an anonymous visitor, never logging in
        self._view_and_wish()
        self.logout()
        wishes = self.env["product.wishlist"].search([("product_id", "=", self.agave.id)])
        self.assertEqual(len(wishes), 3)
        self.assertEqual(len(wishes.filtered(lambda w: not w.partner_id)), 1)

        self._receive(3)
        later = datetime.now() + timedelta(minutes=1)
        with self.mock_mail_gateway():
            self._run_crons(later)
            # every cron again: nothing new
            self._run_crons(later)
            self._run_crons(later + timedelta(hours=1))
        triggers = self.env["behavioral.trigger"].search([("trigger_type", "=", "back_in_stock")])
        self.assertEqual(triggers.partner_id, self.alice.partner_id | self.bob.partner_id)
        self.assertEqual(triggers.filtered(lambda t: t.partner_id == self.alice.partner_id).payload["interest"],
                         ["viewed", "wishlisted"])
        mail = self._new_mails.filtered(lambda m: m.model == "behavioral.enrollment")
        self.assertEqual(len(mail), 1, "one email, to Alice: Bob is blocklisted, the anonymous visitor unknown")
        self.assertEqual(mail.recipient_ids, self.alice.partner_id)
        self.assertEqual(mail.subject, "Good news: Variegated Agave is back in stock")
        self.assertIn("Hi Alice,", mail.body_html)
        self.assertIn("Variegated Agave", mail.body_html)
        self.assertIn("42.00", mail.body_html)
        enrollments = self.env["behavioral.enrollment"].search([("sequence_id", "=", self.sequence.id)])
        self.assertEqual(enrollments.filtered(lambda e: e.partner_id == self.alice.partner_id).trace_ids.mail_mail_id,
                         mail)
        self.assertEqual(enrollments.filtered(lambda e: e.partner_id == self.bob.partner_id).exit_reason,
                         "blacklisted")
