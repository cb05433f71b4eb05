from odoo import api, fields, models
from odoo.tools import SQL


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    goal = fields.Selection(
        selection_add=[("order_product", "Customer orders one of the products")],
        ondelete={"order_product": lambda records: records.write({"goal": "none"})})


class BehavioralEnrollment(models.Model):
    """Goal ``order_product``: the customer confirms, at or after
    ``goal_since``, an order containing one of the products listed in the
    trigger's payload (``product_ids``, e.g. the products viewed)."""

    _inherit = "behavioral.enrollment"

    @api.model
    def _get_goal_reached_order_product(self, rows):
        """:param list rows: (key, partner id, order id or False, since, payload)
        :return dict: {key: id of the first qualifying order}"""
        values = []
        for key, partner_id, _order_id, since, payload in rows:
            product_ids = [pid for pid in ((payload or {}).get("product_ids") or [])
                           if isinstance(pid, int) and not isinstance(pid, bool)]
            if partner_id and since and product_ids:
                values.append((key, partner_id, None, since, product_ids))
        if values:
            self.env["sale.order.line"].flush_model(["order_id", "product_id"])
        return self._get_goal_orders(values, SQL(
            """so.partner_id = v.partner_id AND so.date_order >= v.since
               AND EXISTS (SELECT 1 FROM sale_order_line line
                            WHERE line.order_id = so.id AND line.product_id = ANY(v.product_ids))"""))
