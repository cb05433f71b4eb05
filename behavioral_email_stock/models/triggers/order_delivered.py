from odoo import api, fields, models


class BehavioralTrigger(models.Model):
    """``order_delivered``: every delivery of a sale order is done.

    Captured by ``stock.picking._action_done`` (a delivery validated): when
    the transfers of its order are all done or canceled and at least one was
    delivered (``sale.order.delivery_status`` is *full*), the order is
    delivered. One trigger per order, dated when its last delivery was
    validated: an order shipped in several parcels is delivered once, with
    the last one; a later return adds nothing. The source document is the
    order; the payload names the delivery that completed it.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("order_delivered", "Order delivered")], ondelete={"order_delivered": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["order_delivered"] = {"model": "sale.order", "goal": "none", "settings": ["website_id"]}
        return kinds

    @api.model
    def _capture_order_delivered(self, pickings):
        """:param pickings: transfers just validated, linked to sale orders"""
        last_picking = {}
        for picking in pickings.sorted("id"):
            last_picking[picking.sale_id] = picking
        orders = pickings.sale_id.filtered(lambda o: o.delivery_status == "full" and o.partner_id)
        now = fields.Datetime.now()
        public = set(self._get_public_partner_ids())
        return self._insert_triggers([{
            "trigger_type": "order_delivered",
            "partner_id": order.partner_id.id,
            "res_model": "sale.order",
            "res_id": order.id,
            "occurred_at": now,
            "dedupe_key": f"order_delivered:{order.id}",
            "company_id": order.company_id.id,
            "payload": {
                "website_id": order.website_id.id or False,
                "picking_id": last_picking[order].id,
                "picking_name": last_picking[order].name,
                "amount_total": order.amount_total,
                "currency": order.currency_id.name,
            },
        } for order in orders if order.partner_id.id not in public])


class BehavioralEnrollment(models.Model):
    _inherit = "behavioral.enrollment"

    def _get_delivered_lines(self):
        """[(sale.order.line, review url)]: the lines of the order that were
        delivered, at least in part (the rest of a line may have been
        canceled), each with the link where the customer reviews its product
        (``_get_review_links``). What the "Delivered items" block shows."""
        self.ensure_one()
        links = dict(self._get_review_links())
        lines = self.order_id.sudo().order_line.filtered(
            lambda line: line.product_id in links and line.qty_delivered > 0)
        return [(line, links[line.product_id]) for line in lines]


class BehavioralSequenceStep(models.Model):
    _inherit = "behavioral.sequence.step"

    @api.model
    def _get_email_blocks(self):
        blocks = super()._get_email_blocks()
        blocks["delivered_lines"] = (
            self.env._("Delivered items"), "behavioral_email_stock.email_block_delivered_lines")
        return blocks
