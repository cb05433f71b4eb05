import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL, split_every

from ..tools import can_commit
from ..tools.revenue import order_money_join
from .triggers.date_anniversary import sql_month_day

_logger = logging.getLogger(__name__)


class ResPartner(models.Model):
    _inherit = "res.partner"

    behavioral_enrollment_ids = fields.One2many(
        "behavioral.enrollment", "partner_id", string="Email Sequences", readonly=True)
    behavioral_enrollment_count = fields.Integer(
        "Sequences", compute="_compute_behavioral_enrollment_count",
        groups="behavioral_email.group_behavioral_user")
    # -- measurement: customer lifetime value, refreshed by _cron_behavioral_clv --
    behavioral_clv_historic = fields.Monetary(
        "Historic Value", readonly=True, copy=False, currency_field="currency_id",
        help="Net revenue of the contact's confirmed orders so far: untaxed, in the company's "
             "currency, minus credit notes. Refreshed daily; usable in sequence filters.")
    behavioral_clv_expected = fields.Monetary(
        "Expected Value", readonly=True, copy=False, currency_field="currency_id",
        help="Net revenue expected from the contact over the coming years "
             "(behavioral_email.clv_horizon_years, 2 by default): their average order value "
             "times their order frequency (orders after the first, per year between their "
             "first and last order) times the horizon; a one-order customer is expected to "
             "order once more. Refreshed daily; usable in sequence filters.")
    # --

    def _compute_behavioral_enrollment_count(self):
        counts = self.env["behavioral.enrollment"]._count_by("partner_id", self)
        for partner in self:
            partner.behavioral_enrollment_count = counts.get(partner, 0)

    def action_view_behavioral_enrollments(self):
        self.ensure_one()
        return self.env["behavioral.enrollment"]._action_view([("partner_id", "=", self.id)])

    # ---- TIMELINE: what the sequences did with this contact, and why
    behavioral_timeline_html = fields.Html(
        "Sequence Timeline", compute="_compute_behavioral_timeline_html", sanitize=False,
        groups="behavioral_email.group_behavioral_user")

    def _compute_behavioral_timeline_html(self):
        limit = int(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.timeline_enrollments", 20)) or 20
        for partner in self:
            enrollments = self.env["behavioral.enrollment"].search(
                [("partner_id", "=", partner._origin.id)], limit=limit) if partner._origin.id else \
                self.env["behavioral.enrollment"]
            timeline = enrollments._get_timeline()
            entries = sorted(
                (entry for items in timeline.values() for entry in items),
                key=lambda e: e["date"] or fields.Datetime.now(), reverse=True)
            partner.behavioral_timeline_html = self.env["ir.qweb"]._render(
                "behavioral_email.enrollment_timeline", {"entries": entries, "show_sequence": True})
    # ---- end of TIMELINE

    # ------------------------------------------------------------
    # CAPTURE
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        partners = super().create(vals_list)
        partners.filtered("email")._behavioral_capture_created()
        return partners

    def write(self, vals):
        res = super().write(vals)
        if vals.get("email"):
            # A contact created without an address and given one right after
            # (some sign-up flows do this) is a new contact too; the key keeps
            # it to once. An old contact whose address is added later is not:
            # welcoming a long-standing customer would come as a surprise.
            recent = fields.Datetime.now() - timedelta(days=1)
            self.filtered(lambda p: p.create_date and p.create_date >= recent)._behavioral_capture_created()
        return res

    def _behavioral_capture_created(self):
        if not self or self.env.context.get("behavioral_no_capture"):
            return
        try:
            with self.env.cr.savepoint(flush=False):
                self.env["behavioral.trigger"].sudo()._capture_partner_created(self)
        except Exception:  # noqa: BLE001 - capture must never break the write
            _logger.exception("behavioral_email: could not capture new contacts %s", self.ids)

    # ------------------------------------------------------------
    # DATES (date_anniversary) AND INDEXES OF THE TRIGGER KINDS
    # ------------------------------------------------------------

    behavioral_birthday = fields.Date(
        "Birthday", help="Birthday email sequences greet the contact on this day (the year is not shown).")
    behavioral_first_order_date = fields.Datetime(
        "First Order On", compute="_compute_behavioral_first_order_date", store=True, readonly=True,
        help="When the contact's first confirmed order was placed; anniversary sequences follow it.")

    def init(self):
        super().init()
        # yearly dates are detected by month and day: these expression indexes
        # serve the shipped sequences (see triggers/date_anniversary.py)
        for fname in ("behavioral_birthday", "behavioral_first_order_date"):
            self.env.cr.execute(SQL(
                "CREATE INDEX IF NOT EXISTS %s ON res_partner (%s) WHERE %s IS NOT NULL",
                SQL.identifier(f"res_partner_{fname}_month_day_idx"),
                sql_month_day(SQL.identifier(fname)), SQL.identifier(fname)))
        # customers behind mailing-list emails are found by address
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS res_partner_behavioral_email_normalized_idx "
            "ON res_partner (email_normalized) WHERE email_normalized IS NOT NULL"))
        # the lifetime value refresh reads the orders and credit notes changed since its last run
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS sale_order_behavioral_write_date_idx ON sale_order (write_date)"))
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS account_move_behavioral_refund_write_date_idx "
            "ON account_move (write_date) WHERE move_type = 'out_refund'"))

    @api.depends("sale_order_ids.state", "sale_order_ids.date_order")
    def _compute_behavioral_first_order_date(self):
        firsts = dict(self.env["sale.order"].sudo()._read_group(
            [("partner_id", "in", self.ids), ("state", "=", "sale")], ["partner_id"], ["date_order:min"]))
        for partner in self:
            first = firsts.get(partner, False)
            # written only when it changes: every new cart lands here, and the
            # public user's row must not be rewritten by each anonymous cart
            if partner.behavioral_first_order_date != first:
                partner.behavioral_first_order_date = first

    # ------------------------------------------------------------
    # CUSTOMER LIFETIME VALUE (measurement)
    # ------------------------------------------------------------

    @api.model
    def _cron_behavioral_clv(self):
        """Refresh the lifetime values of the contacts whose orders or credit
        notes changed since the last run (all contacts with orders the first
        time), in batches committed one by one."""
        ICP = self.env["ir.config_parameter"].sudo()
        started = fields.Datetime.now()
        last_run = ICP.get_param("behavioral_email.clv_refreshed_at")
        batch_size = int(ICP.get_param("behavioral_email.clv_batch_size", 1000)) or 1000
        partner_ids = self._behavioral_clv_changed_partners(
            # an hour of overlap: a transaction still open at the last run may
            # have committed changes stamped before it
            fields.Datetime.from_string(last_run) - timedelta(hours=1) if last_run else None)
        done = 0
        for chunk in split_every(batch_size, partner_ids):
            self.browse(chunk)._behavioral_refresh_clv()
            done += len(chunk)
            self.env["ir.cron"]._notify_progress(done=done, remaining=len(partner_ids) - done)
            if can_commit(self.env):
                # one batch of contacts is one unit of work, never redone
                self.env.cr.commit()  # pylint: disable=invalid-commit
        ICP.set_param("behavioral_email.clv_refreshed_at", fields.Datetime.to_string(started))
        return done

    @api.model
    def _behavioral_clv_changed_partners(self, since):
        self.env.flush_all()
        if since is None:
            self.env.cr.execute(SQL(
                "SELECT DISTINCT partner_id FROM sale_order WHERE state = 'sale' ORDER BY partner_id"))
            return [row[0] for row in self.env.cr.fetchall()]
        self.env.cr.execute(SQL(
            """SELECT partner_id FROM sale_order WHERE write_date > %(since)s
               UNION
               SELECT so.partner_id
                 FROM account_move refund
                 JOIN account_move_line line ON line.move_id IN (refund.id, refund.reversed_entry_id)
                 JOIN sale_order_line_invoice_rel rel ON rel.invoice_line_id = line.id
                 JOIN sale_order_line sol ON sol.id = rel.order_line_id
                 JOIN sale_order so ON so.id = sol.order_id
                WHERE refund.move_type = 'out_refund' AND refund.write_date > %(since)s
               ORDER BY 1""", since=since))
        return [row[0] for row in self.env.cr.fetchall() if row[0]]

    def _behavioral_refresh_clv(self):
        """Recompute the lifetime values of these contacts, in one statement."""
        if not self.ids:
            return
        horizon = float(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.clv_horizon_years", 2) or 2)
        self.env.cr.execute(SQL(
            """WITH orders AS (
                   SELECT so.partner_id, so.date_order, money.amount - money.refunded AS revenue
                     FROM sale_order so
                     %(money)s
                    WHERE so.partner_id IN %(ids)s AND so.state = 'sale'
               ), totals AS (
                   SELECT partner_id, count(*) AS n, sum(revenue) AS historic,
                          EXTRACT(EPOCH FROM max(date_order) - min(date_order)) / 31557600.0 AS span_years
                     FROM orders GROUP BY partner_id
               )
               UPDATE res_partner p
                  SET behavioral_clv_historic = COALESCE(totals.historic, 0),
                      behavioral_clv_expected = CASE
                          WHEN totals.n IS NULL THEN 0
                          WHEN totals.n = 1 THEN GREATEST(totals.historic, 0)
                          ELSE GREATEST(totals.historic / totals.n, 0)
                               * LEAST((totals.n - 1) / GREATEST(totals.span_years, 1 / 12.0), 52)
                               * %(horizon)s
                      END
                 FROM res_partner target
                 LEFT JOIN totals ON totals.partner_id = target.id
                WHERE p.id = target.id AND target.id IN %(ids)s""",
            money=order_money_join("so"), ids=tuple(self.ids), horizon=horizon))
        self.invalidate_recordset(["behavioral_clv_historic", "behavioral_clv_expected"])
