from odoo import api, models

CART_FIELDS = {"product_id", "product_uom_qty", "price_unit"}


class SaleOrderLine(models.Model):
    _inherit = "sale.order.line"

    @api.model_create_multi
    def create(self, vals_list):
        lines = super().create(vals_list)
        lines.order_id._behavioral_touch_carts()
        return lines

    def write(self, vals):
        res = super().write(vals)
        if CART_FIELDS & set(vals):
            self.order_id._behavioral_touch_carts()
        return res

    def unlink(self):
        orders = self.order_id
        res = super().unlink()
        orders.exists()._behavioral_touch_carts()
        return res
