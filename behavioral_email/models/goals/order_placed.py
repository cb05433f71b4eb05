from odoo import api, fields, models
from odoo.tools import SQL


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    goal = fields.Selection(
        selection_add=[("order_placed", "Customer places an order")], ondelete={"order_placed": lambda records: records.write({"goal": "none"})})


class BehavioralEnrollment(models.Model):
    """Goal ``order_placed``: the enrollment's own order (a cart) is
    confirmed, or the customer confirms any order at or after ``goal_since``."""

    _inherit = "behavioral.enrollment"

    @api.model
    def _get_goal_reached_order_placed(self, rows):
        """:param list rows: (key, partner id, order id or False, since, payload)
        :return dict: {key: id of the first qualifying order}"""
        return self._get_goal_orders(
            [(key, partner_id, order_id, since, None)
             for key, partner_id, order_id, since, _payload in rows if partner_id],
            SQL("so.id = v.order_id OR (so.partner_id = v.partner_id AND so.date_order >= v.since)"))
