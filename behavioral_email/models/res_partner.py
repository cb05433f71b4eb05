import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

from .triggers.date_anniversary import sql_month_day

_logger = logging.getLogger(__name__)


class ResPartner(models.Model):
    _inherit = "res.partner"

    behavioral_enrollment_ids = fields.One2many(
        "behavioral.enrollment", "partner_id", string="Email Sequences", readonly=True)
    behavioral_enrollment_count = fields.Integer(
        "Sequences", compute="_compute_behavioral_enrollment_count",
        groups="behavioral_email.group_behavioral_user")

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
