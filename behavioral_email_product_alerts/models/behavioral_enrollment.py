from odoo import models

# products an alert email shows at most
MAX_ALERT_PRODUCTS = 12


class BehavioralEnrollment(models.Model):
    _inherit = "behavioral.enrollment"

    def _get_alert_products(self, limit=MAX_ALERT_PRODUCTS):
        """What the back in stock / price drop block shows: the products of
        the trigger the customer can buy now (published, on sale, not sold
        out; read for the whole batch being rendered at once), each with its
        price now; after a price drop, only while it is still lower than
        before, with the old price and the drop in percent.

        :return list: dicts with ``product``, ``price``, ``old_price`` (False
            after a restock), ``percent`` and ``back_in_stock``
        """
        self.ensure_one()
        payload = self.payload if isinstance(self.payload, dict) else {}
        old_price = payload.get("old_price")
        if not isinstance(old_price, (int, float)) or isinstance(old_price, bool):
            old_price = False
        back_in_stock = self.sequence_id.trigger_type == "back_in_stock"
        items = []
        for product in self.browsed_product_ids[:limit]:
            price = product.lst_price
            was = old_price if old_price and product.currency_id.compare_amounts(old_price, price) > 0 else False
            if not back_in_stock and not was:
                continue
            items.append({
                "product": product,
                "price": price,
                "old_price": was,
                "percent": int(round((was - price) * 100.0 / was)) if was else 0,
                "back_in_stock": back_in_stock,
            })
        return items
