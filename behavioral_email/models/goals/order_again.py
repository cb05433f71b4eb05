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
                  AND so.partner_id = v.partner_id
                  AND so.date_order >= v.since
                  AND so.id IS DISTINCT FROM v.order_id
                GROUP BY v.key""",
            values))
        return dict(self.env.cr.fetchall())
