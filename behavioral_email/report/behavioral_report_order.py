from odoo import fields, models, tools
from odoo.tools import SQL

from ..tools.revenue import MARGIN, NET_REVENUE, order_money_join


class BehavioralReportOrder(models.Model):
    """Orders attributed to the sequences' emails, one row per confirmed
    order that ``sale.order._behavioral_attribute`` credited to a sequence:
    its gross and net revenue, its credit notes and, where product costs are
    known, its margin (see :func:`order_money_join`)."""

    _name = "behavioral.report.order"
    _description = "Behavioral Email Attributed Orders"
    _auto = False
    _order = "date_order desc, id desc"
    _rec_name = "order_id"

    order_id = fields.Many2one("sale.order", readonly=True)
    partner_id = fields.Many2one("res.partner", string="Customer", readonly=True)
    company_id = fields.Many2one("res.company", readonly=True)
    currency_id = fields.Many2one(related="company_id.currency_id")
    date_order = fields.Datetime("Order Date", readonly=True)
    sequence_id = fields.Many2one("behavioral.sequence", readonly=True)
    step_id = fields.Many2one("behavioral.sequence.step", string="Step", readonly=True)
    variant_id = fields.Many2one("behavioral.step.variant", string="Variant", readonly=True)
    trace_id = fields.Many2one("behavioral.trace", string="Email", readonly=True)
    amount = fields.Monetary("Untaxed Amount", readonly=True, currency_field="currency_id")
    refunded = fields.Monetary("Credit Notes", readonly=True, currency_field="currency_id")
    revenue = fields.Monetary("Net Revenue", readonly=True, currency_field="currency_id")
    margin = fields.Monetary(readonly=True, currency_field="currency_id")

    def init(self):
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(SQL(
            """CREATE VIEW %(table)s AS (
                SELECT so.id AS id,
                       so.id AS order_id,
                       so.partner_id,
                       so.company_id,
                       so.date_order,
                       so.behavioral_sequence_id AS sequence_id,
                       so.behavioral_step_id AS step_id,
                       so.behavioral_variant_id AS variant_id,
                       so.behavioral_trace_id AS trace_id,
                       money.amount,
                       money.refunded,
                       %(net)s AS revenue,
                       %(margin)s AS margin
                  FROM sale_order so
                  %(money)s
                 WHERE so.state = 'sale' AND so.behavioral_sequence_id IS NOT NULL
            )""", table=SQL.identifier(self._table), money=order_money_join("so"), net=NET_REVENUE,
            margin=MARGIN))
