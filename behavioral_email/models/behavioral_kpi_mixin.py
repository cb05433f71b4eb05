from odoo import api, fields, models

# behavioral.report measures summed into the kpi_* counters
KPI_COUNTERS = ("sent", "delivered", "opened", "clicked", "converted", "unsubscribed", "bounced")


class BehavioralKpiMixin(models.AbstractModel):
    """Key numbers of what a sequence, a step or a variant sent and earned.

    The numbers are read from ``behavioral.report`` (one row per trace),
    grouped on ``_kpi_key``, the report's field that points at the record
    (``sequence_id``, ``step_id`` or ``variant_id``): one query for all the
    records shown, whatever their number.

    Rates are per email sent (bounces included), the denominator the A/B
    decisions use too, so that the numbers on the cards and on the decision
    posted in the chatter agree. Revenue is net: untaxed, in the company's
    currency, minus later credit notes, of the orders attributed to the
    emails (last touch, see ``sale.order._behavioral_attribute``).
    """

    _name = "behavioral.kpi.mixin"
    _description = "Behavioral Email Key Numbers"

    _kpi_key = None

    kpi_entered = fields.Integer("Entered", compute="_compute_kpis", help="Customers who reached it.")
    kpi_sent = fields.Integer("Sent", compute="_compute_kpis")
    kpi_delivered = fields.Integer("Delivered", compute="_compute_kpis")
    kpi_opened = fields.Integer("Opened", compute="_compute_kpis")
    kpi_clicked = fields.Integer("Clicked", compute="_compute_kpis")
    kpi_converted = fields.Integer(
        "Orders", compute="_compute_kpis", help="Emails followed by an order attributed to them.")
    kpi_unsubscribed = fields.Integer("Unsubscribed", compute="_compute_kpis")
    kpi_bounced = fields.Integer("Bounced", compute="_compute_kpis")
    kpi_currency_id = fields.Many2one("res.currency", compute="_compute_kpis")
    kpi_revenue = fields.Monetary(
        "Net Revenue", compute="_compute_kpis", currency_field="kpi_currency_id",
        help="Untaxed total of the attributed orders, minus their credit notes.")
    kpi_margin = fields.Monetary(
        "Margin", compute="_compute_kpis", currency_field="kpi_currency_id",
        help="Net revenue minus the cost of the products sold, for the orders whose "
             "products all have a cost.")
    kpi_delivered_rate = fields.Float("Delivery Rate", compute="_compute_kpis")
    kpi_open_rate = fields.Float("Open Rate", compute="_compute_kpis")
    kpi_click_rate = fields.Float("Click Rate", compute="_compute_kpis")
    kpi_conversion_rate = fields.Float("Conversion Rate", compute="_compute_kpis")
    kpi_unsubscribe_rate = fields.Float("Unsubscribe Rate", compute="_compute_kpis")
    kpi_bounce_rate = fields.Float("Bounce Rate", compute="_compute_kpis")
    kpi_revenue_per_recipient = fields.Monetary(
        "Revenue per Recipient", compute="_compute_kpis", currency_field="kpi_currency_id")

    def _compute_kpis(self):
        key = self._kpi_key
        aggregates = ["enrollment_id:count_distinct", "revenue:sum", "margin:sum"]
        aggregates += [f"{fname}:sum" for fname in KPI_COUNTERS]
        rows = {}
        if self.ids:
            # the report is a view over traces, mailing traces and orders
            self.env.flush_all()
            Report = self.env["behavioral.report"].sudo()
            for record, *values in Report._read_group([(key, "in", self.ids)], [key], aggregates):
                rows[record.id] = values
        currency = self.env.company.currency_id
        for record in self:
            entered, revenue, margin, *counts = rows.get(record.id) or [0, 0.0, 0.0] + [0] * len(KPI_COUNTERS)
            values = dict(zip(KPI_COUNTERS, counts))
            sent = values["sent"]
            record.kpi_currency_id = currency
            record.kpi_entered = entered
            record.kpi_revenue = revenue or 0.0
            record.kpi_margin = margin or 0.0
            for fname in KPI_COUNTERS:
                record[f"kpi_{fname}"] = values[fname] or 0
            record.kpi_delivered_rate = self._kpi_rate(values["delivered"], sent)
            record.kpi_open_rate = self._kpi_rate(values["opened"], sent)
            record.kpi_click_rate = self._kpi_rate(values["clicked"], sent)
            record.kpi_conversion_rate = self._kpi_rate(values["converted"], sent)
            record.kpi_unsubscribe_rate = self._kpi_rate(values["unsubscribed"], sent)
            record.kpi_bounce_rate = self._kpi_rate(values["bounced"], sent)
            record.kpi_revenue_per_recipient = (revenue or 0.0) / sent if sent else 0.0

    @api.model
    def _kpi_rate(self, count, total):
        """A share in [0, 1] (views show it with the percentage widget)."""
        return (count or 0) / total if total else 0.0
