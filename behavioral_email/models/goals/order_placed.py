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
        rows = [row for row in rows if row[1]]
        if not rows:
            return {}
        self.env["sale.order"].flush_model(["state", "partner_id", "date_order"])
        values = SQL(", ").join(
            SQL("(%s::int, %s::int, %s::int, %s::timestamp)", key, partner_id, order_id or None, since)
            for key, partner_id, order_id, since, _payload in rows
        )
        self.env.cr.execute(SQL(
            """SELECT v.key, min(so.id) FROM (VALUES %s) AS v(key, partner_id, order_id, since)
                 JOIN sale_order so
                   ON so.state = 'sale'
                  AND (so.id = v.order_id OR (so.partner_id = v.partner_id AND so.date_order >= v.since))
                GROUP BY v.key""",
            values))
        return dict(self.env.cr.fetchall())
