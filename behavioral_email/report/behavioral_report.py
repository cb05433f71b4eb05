from odoo import fields, models, tools
from odoo.tools import SQL

from ..tools.revenue import confirmed_orders_join

# An unsubscription (address blocklisted, or opted out of a mailing list)
# counts against the last email a sequence sent to that address, when it came
# within this many days of it.
UNSUBSCRIBE_DAYS = 7


class BehavioralReport(models.Model):
    """Sequence emails analysis: one row per trace (one step run for one
    enrollment), with what became of it.

    Measures, each 0 or 1 per row unless said otherwise, so that sums are
    counts and every measure groups with ``read_group``:

    * ``sent``: an email was queued (a mailing trace exists);
    * ``delivered``: the mail server accepted it (or it was opened);
    * ``opened``, ``clicked``: from the mailing trace (a click counts as an open);
    * ``bounced``: the address bounced (mailing trace) or the server refused it;
    * ``unsubscribed``: the address was blocklisted or opted out of a mailing
      list within :data:`UNSUBSCRIBE_DAYS` days after this email, with no
      other sequence email in between;
    * ``converted``: at least one confirmed order is attributed to this email
      (last touch, ``sale.order._behavioral_attribute``); ``order_count``
      how many; ``revenue`` their net revenue; ``margin`` their margin where
      the product costs are known.

    Spam complaints are not listed: Odoo receives no feedback-loop reports.
    """

    _name = "behavioral.report"
    _description = "Behavioral Email Analysis"
    _auto = False
    _order = "executed_at desc, id desc"
    _rec_name = "trace_id"

    trace_id = fields.Many2one("behavioral.trace", string="Email", readonly=True)
    enrollment_id = fields.Many2one("behavioral.enrollment", readonly=True)
    sequence_id = fields.Many2one("behavioral.sequence", readonly=True)
    step_id = fields.Many2one("behavioral.sequence.step", string="Step", readonly=True)
    variant_id = fields.Many2one("behavioral.step.variant", string="Variant", readonly=True)
    partner_id = fields.Many2one("res.partner", string="Customer", readonly=True)
    company_id = fields.Many2one("res.company", readonly=True)
    currency_id = fields.Many2one(related="company_id.currency_id")
    is_holdout = fields.Boolean("Holdout", readonly=True)
    state = fields.Selection(
        [("sent", "Sent"), ("skipped", "Skipped"), ("canceled", "Canceled"), ("failed", "Failed")],
        readonly=True)
    executed_at = fields.Datetime("Run On", readonly=True)
    sent = fields.Integer(readonly=True)
    delivered = fields.Integer(readonly=True)
    opened = fields.Integer(readonly=True)
    clicked = fields.Integer(readonly=True)
    bounced = fields.Integer(readonly=True)
    unsubscribed = fields.Integer(readonly=True)
    converted = fields.Integer("Converted", readonly=True)
    order_count = fields.Integer("Orders", readonly=True)
    revenue = fields.Monetary("Net Revenue", readonly=True, currency_field="currency_id")
    margin = fields.Monetary(readonly=True, currency_field="currency_id")

    def init(self):
        tools.drop_view_if_exists(self.env.cr, self._table)
        self.env.cr.execute(SQL(
            """CREATE VIEW %(table)s AS (
                SELECT bt.id AS id,
                       bt.id AS trace_id,
                       bt.enrollment_id,
                       bt.sequence_id,
                       bt.step_id,
                       bt.variant_id,
                       bt.partner_id,
                       bt.company_id,
                       e.is_holdout,
                       bt.state,
                       bt.executed_at,
                       (bt.mailing_trace_id IS NOT NULL)::int AS sent,
                       COALESCE(mt.trace_status IN ('sent', 'open', 'reply')
                                OR mt.open_datetime IS NOT NULL
                                OR mt.links_click_datetime IS NOT NULL, FALSE)::int AS delivered,
                       COALESCE(mt.trace_status IN ('open', 'reply')
                                OR mt.open_datetime IS NOT NULL
                                OR mt.links_click_datetime IS NOT NULL, FALSE)::int AS opened,
                       (mt.links_click_datetime IS NOT NULL)::int AS clicked,
                       COALESCE(mt.trace_status = 'bounce' OR bt.failure_type = 'mail_bounce', FALSE)::int AS bounced,
                       COALESCE(unsubscription.flag, 0) AS unsubscribed,
                       (COALESCE(orders.order_count, 0) > 0)::int AS converted,
                       COALESCE(orders.order_count, 0) AS order_count,
                       COALESCE(orders.revenue, 0) AS revenue,
                       orders.margin
                  FROM behavioral_trace bt
                  JOIN behavioral_enrollment e ON e.id = bt.enrollment_id
                  LEFT JOIN mailing_trace mt ON mt.id = bt.mailing_trace_id
                  LEFT JOIN res_partner partner ON partner.id = bt.partner_id
                  %(orders)s
                  LEFT JOIN LATERAL (
                      SELECT 1 AS flag
                        FROM (
                            SELECT bl.write_date AS at
                              FROM mail_blacklist bl
                             WHERE bl.active AND bl.email = partner.email_normalized
                            UNION ALL
                            SELECT sub.opt_out_datetime
                              FROM mailing_subscription sub
                              JOIN mailing_contact contact ON contact.id = sub.contact_id
                             WHERE sub.opt_out AND contact.email_normalized = partner.email_normalized
                        ) event
                       WHERE event.at >= bt.executed_at
                         AND event.at < bt.executed_at + %(days)s * interval '1 day'
                         AND NOT EXISTS (
                             SELECT 1 FROM behavioral_trace later
                              WHERE later.partner_id = bt.partner_id
                                AND later.mailing_trace_id IS NOT NULL
                                AND later.executed_at > bt.executed_at
                                AND later.executed_at <= event.at)
                       LIMIT 1
                  ) unsubscription ON bt.mailing_trace_id IS NOT NULL
            )""",
            table=SQL.identifier(self._table), days=UNSUBSCRIBE_DAYS,
            orders=confirmed_orders_join("orders", SQL("so.behavioral_trace_id = bt.id"), margin=True)))
