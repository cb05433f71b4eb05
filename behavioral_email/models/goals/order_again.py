from odoo import api, fields, models
from odoo.tools import SQL


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    goal = fields.Selection(
        selection_add=[("order_again", "Customer places another order")],
        ondelete={"order_again": lambda records: records.write({"goal": "none"})})


class BehavioralEnrollment(models.Model):
    """Goal ``order_again``: the customer confirms an order at or after
    ``goal_since`` other than the enrollment's own (for sequences that follow
    an order: its delivery, its paid invoice; there the own order is already
    confirmed and ``order_placed`` would end them at once)."""

    _inherit = "behavioral.enrollment"

    @api.model
    def _get_goal_reached_order_again(self, rows):
        """:param list rows: (key, partner id, order id or False, since, payload)
        :return dict: {key: id of the first qualifying order}"""
        return self._get_goal_orders(
            [(key, partner_id, order_id, since, None)
             for key, partner_id, order_id, since, _payload in rows if partner_id],
            SQL("""so.partner_id = v.partner_id AND so.date_order >= v.since
                   AND so.id IS DISTINCT FROM v.order_id"""))
