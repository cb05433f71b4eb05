"""The shop of the product alert kinds (``back_in_stock``, ``price_drop``,
bridge behavioral_email_product_alerts): a storable product sold only while
in stock, a warehouse to receive it, wishlists. Skipped where the bridge is
not installed."""
import unittest
from unittest.mock import patch

import lxml.html
from freezegun import freeze_time

from .website_common import ShopBrowsingCase, WebsiteVisitsCommon


def skip_without_bridge(env):
    if "behavioral_email_product_alerts" not in env.registry._init_modules:
        raise unittest.SkipTest("behavioral_email_product_alerts (stock and wishlist bridge) is not installed")


class ProductAlertsCommon(WebsiteVisitsCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        skip_without_bridge(cls.env)
        env = cls.env
        cls.warehouse = env["stock.warehouse"].search([("company_id", "=", cls.company.id)], limit=1)
        cls.agave = env["product.product"].create({
            "name": "Blue Agave", "list_price": 30.0, "sale_ok": True, "is_published": True,
            "type": "consu", "is_storable": True, "allow_out_of_stock_order": False, "taxes_id": [(5, 0, 0)],
        })
        cls.internal_partner = cls.user_marketing.partner_id

    # ------------------------------------------------------------
    # SHOP ACTIVITY
    # ------------------------------------------------------------

    def wish(self, partner, product, at):
        """The product is put on the customer's wishlist, as /shop/wishlist/add does."""
        with freeze_time(at):
            return self.env["product.wishlist"].sudo()._add_to_wishlist(
                self.website.pricelist_id.id, self.website.currency_id.id, self.website.id,
                product.lst_price, product.id, partner.id if partner else False)

    def order(self, partner, product, at):
        order = self.env["sale.order"].sudo().create({
            "partner_id": partner.id,
            "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": product.id, "product_uom_qty": 1})],
        })
        self.confirm(order, at)
        return order

    def receipt(self, product, qty):
        """A receipt of ``qty`` units, counted and ready to validate."""
        picking = self.env["stock.picking"].create({
            "picking_type_id": self.warehouse.in_type_id.id,
            "location_id": self.env.ref("stock.stock_location_suppliers").id,
            "location_dest_id": self.warehouse.lot_stock_id.id,
            "move_ids": [(0, 0, {
                "name": product.name,
                "product_id": product.id,
                "product_uom_qty": qty,
                "product_uom": product.uom_id.id,
                "location_id": self.env.ref("stock.stock_location_suppliers").id,
                "location_dest_id": self.warehouse.lot_stock_id.id,
            })],
        })
        picking.action_confirm()
        for move in picking.move_ids:
            move.quantity = move.product_uom_qty
            move.picked = True
        return picking

    def receive(self, product, qty, at):
        """A receipt of ``qty`` units validated as a warehouse worker does."""
        with freeze_time(at):
            picking = self.receipt(product, qty)
            picking.button_validate()
        self.assertEqual(picking.state, "done")
        return picking

    def assert_reruns_add_nothing(self, *times):
        """Every cron run again at ``times``: no email, no trigger, no
        enrollment more."""
        triggers = self.triggers()
        enrollments = self.enrollments(self.sequence)
        with self.mock_queue():
            for at in times:
                self.run_crons(at)
        self.assertFalse(self._new_mails, "rerunning every cron adds nothing")
        self.assertEqual(self.triggers(), triggers)
        self.assertEqual(self.enrollments(self.sequence), enrollments)

    def count_capture_queries(self, model, method, func, *args):
        """The queries run inside ``model.method`` (a capture hook) while
        ``func(*args)`` runs, the registry's caches cold: what the capture
        costs in the shop's own transaction."""
        counts = []
        cls = type(self.env[model])
        original = getattr(cls, method)

        def spy(records, *spy_args, **spy_kwargs):
            # what the shop's own write left to flush (tracking included) is
            # not the capture's
            self.env.cr.flush()
            before = self.env.cr.sql_log_count
            try:
                return original(records, *spy_args, **spy_kwargs)
            finally:
                counts.append(self.env.cr.sql_log_count - before)

        self.env.flush_all()
        self.env.invalidate_all()
        self.env.registry.clear_all_caches()
        with patch.object(cls, method, spy):
            func(*args)
        self.assertEqual(len(counts), 1, f"{model}.{method} ran once")
        return counts[0]

    def triggers(self, kind, partner=None):
        domain = [("trigger_type", "=", kind)]
        if partner:
            domain.append(("partner_id", "=", partner.id))
        return self.env["behavioral.trigger"].search(domain, order="id")


class ProductAlertsShopCase(ShopBrowsingCase):
    """For the cases where customers show their interest in the real shop,
    over HTTP: the product page and its wishlist button."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        skip_without_bridge(cls.env)
        cls._init_mail_gateway()

    def press_wishlist(self, product):
        """Open the product's page and press its wishlist button
        (/shop/wishlist/add), as the page's script does; returns the id the
        page names."""
        page = self.url_open(product.website_url)
        self.assertEqual(page.status_code, 200)
        detail = lxml.html.fromstring(page.text).get_element_by_id("product_detail")
        [product_input] = detail.xpath(".//input[contains(@class, 'product_id')][@name='product_id']")
        product_id = int(product_input.get("value"))
        self.make_jsonrpc_request("/shop/wishlist/add", {"product_id": product_id})
        return product_id
