from odoo import api, fields, models


class BehavioralTrigger(models.Model):
    """``order_confirmed``: an order of a real customer was confirmed.

    Captured by ``sale.order._action_confirm``; one trigger per order.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("order_confirmed", "Order confirmed")], ondelete={"order_confirmed": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["order_confirmed"] = {"model": "sale.order", "goal": "none", "settings": ["website_id"]}
        return kinds

    @api.model
    def _capture_order_confirmed(self, orders):
        now = fields.Datetime.now()
        public = set(self._get_public_partner_ids())
        return self._insert_triggers([{
            "trigger_type": "order_confirmed",
            "partner_id": order.partner_id.id,
            "res_model": "sale.order",
            "res_id": order.id,
            "occurred_at": now,
            "dedupe_key": f"order_confirmed:{order.id}",
            "company_id": order.company_id.id,
            "payload": {
                "website_id": order.website_id.id or False,
                "amount_total": order.amount_total,
                "currency": order.currency_id.name,
            },
        } for order in orders if order.partner_id and order.partner_id.id not in public])
