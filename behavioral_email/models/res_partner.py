import logging
from datetime import datetime, time, timedelta

import pytz

from odoo import api, fields, models, tools
from odoo.exceptions import AccessError
from odoo.tools import SQL, split_every

from ..tools import can_commit
from ..tools.revenue import NET_REVENUE, order_money_join
from .behavioral_consent import CTX_ERASURE, CTX_SOURCE
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
                   SELECT so.partner_id, so.date_order, %(net)s AS revenue
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
            money=order_money_join("so"), net=NET_REVENUE, ids=tuple(self.ids), horizon=horizon))
        self.invalidate_recordset(["behavioral_clv_historic", "behavioral_clv_expected"])


# ----------------------------------------------------------------------
# CUSTOMER PREFERENCES: preference page, guests, export and erasure
# ----------------------------------------------------------------------


class ResPartnerPreferences(models.Model):
    """What a customer chose on their preference page, and their data rights.

    ``behavioral_frequency`` and ``behavioral_pause_until`` are honoured by
    every marketing sequence (``behavioral.enrollment._get_customer_preference_delays``):
    a step that would come too soon waits, it is not dropped. Their changes
    land in the consent ledger (:meth:`write`).
    """

    _inherit = "res.partner"

    behavioral_frequency = fields.Selection(
        [("all", "As often as relevant"),
         ("weekly", "At most one email a week"),
         ("monthly", "At most one email a month")],
        string="Marketing Email Frequency", default="all", required=True,
        help="Chosen by the customer: marketing sequences hold their next email until it is allowed.")
    behavioral_pause_until = fields.Date(
        "Marketing Email Paused Until",
        help="Chosen by the customer: no marketing email before this date; sequences resume on it.")
    behavioral_guest_website_id = fields.Many2one(
        "website", string="Guest Checkout On", readonly=True, ondelete="set null", copy=False,
        help="The contact was created by a visitor checking out without an account on this "
             "website: its policy for guests applies to marketing sequences.")
    behavioral_consent_ids = fields.One2many(
        "behavioral.consent", "partner_id", string="Consent History", readonly=True,
        groups="behavioral_email.group_behavioral_user")

    def write(self, vals):
        tracked = {"behavioral_frequency", "behavioral_pause_until"} & set(vals)
        if not tracked or self.env.context.get(CTX_ERASURE):
            return super().write(vals)
        before = {p.id: (p.behavioral_frequency, p.behavioral_pause_until) for p in self}
        res = super().write(vals)
        rows = []
        for partner in self:
            frequency, pause = before[partner.id]
            if partner.behavioral_frequency != frequency:
                rows.append({"partner_id": partner.id, "action": "frequency",
                             "details": partner.behavioral_frequency})
            if partner.behavioral_pause_until != pause:
                if partner.behavioral_pause_until:
                    rows.append({"partner_id": partner.id, "action": "paused",
                                 "details": fields.Date.to_string(partner.behavioral_pause_until)})
                else:
                    rows.append({"partner_id": partner.id, "action": "resumed"})
        self.env["behavioral.consent"]._record(rows)
        return res

    # ------------------------------------------------------------
    # PREFERENCE PAGE
    # ------------------------------------------------------------

    def _behavioral_preference_token(self):
        """Signed token of this contact's preference page, bound to its address:
        it stops working when the address changes."""
        self.ensure_one()
        return tools.hmac(self.env(su=True), "behavioral_email-preferences",
                          (self.id, self.email_normalized or ""))

    def _behavioral_preference_path(self):
        self.ensure_one()
        return f"/email-preferences/{self.id}/{self._behavioral_preference_token()}"

    @api.model
    def _behavioral_frequency_periods(self):
        """{frequency: shortest time between two marketing emails}"""
        return {"weekly": timedelta(days=7), "monthly": timedelta(days=30)}

    def _behavioral_get_resume_at(self):
        """When this contact's pause ends: the start of the chosen day in their
        time zone (UTC if unknown), as a naive UTC datetime; False if no pause."""
        self.ensure_one()
        if not self.behavioral_pause_until:
            return False
        try:
            zone = pytz.timezone(self.tz or "UTC")
        except pytz.UnknownTimeZoneError:
            zone = pytz.utc
        local = zone.localize(datetime.combine(self.behavioral_pause_until, time.min))
        try:
            return local.astimezone(pytz.utc).replace(tzinfo=None)
        except OverflowError:  # a pause until the end of time
            return datetime.max.replace(microsecond=0)

    def _behavioral_record_optin(self, source):
        """The customer ticked the consent checkbox (checkout, sign-up): one
        ``subscribed`` row for all marketing email, unless that is already
        their last choice (an address edited twice is one consent)."""
        partners = self.filtered("email_normalized")
        agreed = partners._behavioral_get_general_consent()
        self.env["behavioral.consent"].with_context(**{CTX_SOURCE: source})._record([
            {"partner_id": partner.id, "action": "subscribed"} for partner in partners if partner.id not in agreed
        ])

    def _behavioral_get_general_consent(self):
        """Ids of these partners whose last choice for all marketing email
        (ledger rows without topic) is ``subscribed``. One query."""
        if not self.ids:
            return set()
        self.env["behavioral.consent"].flush_model()
        self.env.cr.execute(SQL(
            """SELECT DISTINCT ON (partner_id) partner_id, action FROM behavioral_consent
                WHERE partner_id IN %s AND list_id IS NULL AND action IN ('subscribed', 'unsubscribed')
                ORDER BY partner_id, date DESC, id DESC""", tuple(self.ids)))
        return {partner_id for partner_id, action in self.env.cr.fetchall() if action == "subscribed"}

    def _behavioral_guest_refused(self):
        """Ids of these partners that marketing sequences may not email because
        they are guests of a website whose policy refuses them.

        Guests: contacts created by a checkout without an account (and still
        without one). Policy ``checkbox``: refused unless their last choice for
        all marketing email in the ledger is ``subscribed``. Two queries at most.
        """
        guests = self.filtered("behavioral_guest_website_id")
        guests = guests.filtered(lambda p: not p.with_context(active_test=False).user_ids)
        refused = set()
        to_check = []
        for partner in guests:
            policy = partner.behavioral_guest_website_id.behavioral_guest_policy
            if policy == "never":
                refused.add(partner.id)
            elif policy == "checkbox":
                to_check.append(partner.id)
        if to_check:
            refused.update(set(to_check) - self.browse(to_check)._behavioral_get_general_consent())
        return refused

    # ------------------------------------------------------------
    # DATA RIGHTS
    # ------------------------------------------------------------

    def _behavioral_export_data(self):
        """Everything the addon knows about this contact, as JSON-ready data."""
        self.ensure_one()
        partner = self.sudo()
        to_str = fields.Datetime.to_string
        Consent = self.env["behavioral.consent"].sudo()
        consents = Consent.search(Consent._get_history_domain(partner))
        states = self.env["mailing.list"]._behavioral_get_states(partner.email_normalized)
        topics = self.env["mailing.list"]._behavioral_get_offered(partner.email_normalized)
        enrollments = self.env["behavioral.enrollment"].sudo().search([("partner_id", "=", partner.id)])
        traces = enrollments.trace_ids.sorted(lambda t: (t.executed_at or fields.Datetime.now(), t.id))
        clicks = {}
        for click in self.env["link.tracker.click"].sudo().search(
                [("mailing_trace_id", "in", traces.mailing_trace_id.ids)], order="create_date, id"):
            clicks.setdefault(click.mailing_trace_id.id, []).append(
                {"url": click.link_id.url, "date": to_str(click.create_date)})
        orders = enrollments.converted_order_id
        blocklisted = bool(partner.email_normalized) and bool(self.env["mail.blacklist"].sudo().search_count(
            [("email", "=", partner.email_normalized)], limit=1))
        labels = {name: dict(Consent._fields[name]._description_selection(self.env)) for name in ("action", "source")}
        return {
            "exported_at": to_str(fields.Datetime.now()),
            "timezone": "UTC",
            "contact": {
                "name": partner.name,
                "email": partner.email,
                "phone": partner.phone or None,
                "language": partner.lang,
                "birthday": fields.Date.to_string(partner.behavioral_birthday) or None,
                "frequency": partner.behavioral_frequency,
                "paused_until": fields.Date.to_string(partner.behavioral_pause_until) or None,
                "unsubscribed_from_all": blocklisted,
                "guest_checkout_website": partner.behavioral_guest_website_id.name or None,
            },
            "topics": [{
                "topic": mlist._behavioral_get_label(),
                "subscribed": mlist._behavioral_is_subscribed(states),
                "awaiting_confirmation": states.get(mlist.id) == "pending",
            } for mlist in topics],
            "consents": [{
                "date": to_str(row.date),
                "action": row.action,
                "change": labels["action"].get(row.action),
                "source": row.source,
                "source_label": labels["source"].get(row.source),
                "topic": row.list_id._behavioral_get_label() if row.list_id else None,
                "details": row.details or None,
                "email": row.email or None,
                "ip": row.ip or None,
                "user_agent": row.user_agent or None,
            } for row in consents],
            "enrollments": [{
                "sequence": enrollment.sequence_id.name,
                "state": enrollment.state,
                "exit_reason": enrollment.exit_reason or None,
                "started": to_str(enrollment.create_date),
                "last_email": to_str(enrollment.last_step_date) if enrollment.last_step_date else None,
                "next_email_due": to_str(enrollment.next_due) if enrollment.next_due else None,
                "waiting_because": enrollment.wait_reason or None,
                "order": enrollment.order_id.name or None,
            } for enrollment in enrollments],
            "emails": [{
                "sequence": trace.sequence_id.name,
                "subject": trace.subject or trace.step_id.subject,
                "state": trace.state,
                "date": to_str(trace.executed_at) if trace.executed_at else None,
                "opened": to_str(trace.open_datetime) if trace.open_datetime else None,
                "clicks": clicks.get(trace.mailing_trace_id.id, []),
            } for trace in traces],
            "attributed_orders": [{
                "order": order.name,
                "date": to_str(order.date_order),
                "amount": order.amount_total,
                "currency": order.currency_id.name,
            } for order in orders],
        }

    def _behavioral_erase(self):
        """Erase what the addon keeps about these contacts.

        Deleted: their triggers, enrollments and step traces, their queued
        sequence emails, their website visitors, their mailing contacts and
        subscriptions, their birthday and preferences; mass_mailing's delivery traces and click records of
        their emails lose the address and IP. The consent ledger keeps its
        rows without anything personal but the keyed hash of the address.
        Their address is blocklisted, so that marketing to it stays refused:
        that entry is all that is left. The contact itself (name, address,
        orders and invoices) is Odoo's and stays as the law requires.
        """
        partners = self.sudo()
        emails = set(partners.mapped("email_normalized")) - {False}
        Blacklist = self.env["mail.blacklist"].sudo()
        for email in emails:
            Blacklist._add(email, message=self.env._("Erasure of the contact's email marketing data."))
        erasing = {CTX_ERASURE: True}
        enrollments = self.env["behavioral.enrollment"].sudo().search([("partner_id", "in", partners.ids)])
        if enrollments:
            self.env["mail.mail"].sudo().search([
                ("model", "=", "behavioral.enrollment"), ("res_id", "in", enrollments.ids),
            ]).unlink()
            traces = self.env["mailing.trace"].sudo().search([
                ("model", "=", "behavioral.enrollment"), ("res_id", "in", enrollments.ids),
            ])
            if traces:
                self.env.flush_all()
                self.env.cr.execute(SQL(
                    "UPDATE link_tracker_click SET ip = NULL WHERE mailing_trace_id IN %s", tuple(traces.ids)))
                self.env.cr.execute(SQL(
                    "UPDATE mailing_trace SET email = NULL WHERE id IN %s", tuple(traces.ids)))
                self.env.invalidate_all()
            enrollments.unlink()
        self.env["behavioral.trigger"].sudo().search([("partner_id", "in", partners.ids)]).unlink()
        Consent = self.env["behavioral.consent"].sudo().with_context(**erasing)
        domain = [("partner_id", "in", partners.ids)]
        if emails:
            domain = ["|", ("email_hash", "in", [Consent._hash_email(email) for email in emails])] + domain
        Consent.search(domain).write({
            "partner_id": False, "email": False, "ip": False, "user_agent": False,
            "details": False, "erased": True,
        })
        self.env["website.visitor"].sudo().search([("partner_id", "in", partners.ids)]).unlink()
        if emails:
            self.env["mailing.contact"].sudo().with_context(**erasing, active_test=False).search(
                [("email_normalized", "in", list(emails))]).unlink()
        partners.with_context(**erasing).write({
            "behavioral_frequency": "all",
            "behavioral_pause_until": False,
            "behavioral_guest_website_id": False,
            "behavioral_birthday": False,
        })
        return True

    def action_behavioral_erase(self):
        """Back office: erase on the customer's request (sent by other means)."""
        if not self.env.user.has_group("behavioral_email.group_behavioral_manager"):
            raise AccessError(self.env._("Only email sequence administrators can erase a contact's data."))
        self._behavioral_erase()
        return True
