from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from .email_engagement import ENGAGEMENT_SETTINGS


class BehavioralTrigger(models.Model):
    """``email_not_opened``: a marketing email still unopened N days after it
    was sent.

    Detected: one INSERT per distinct N of the running sequences, reading
    the traces sent N days ago (within the entry window) that are still
    ``sent`` (an open, a click or a reply moves them on), through the partial
    index of ``mailing.trace.init``. One trigger per (email, N): the key holds
    the trace and N. Settings, customer and the rule against a sequence
    feeding on its own emails: ``email_engagement.py``.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("email_not_opened", "Email not opened")], ondelete={"email_not_opened": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["email_not_opened"] = {
            "model": "mailing.trace",
            "goal": "order_placed",
            "settings": ENGAGEMENT_SETTINGS + ["not_opened_days"],
        }
        return kinds

    @api.model
    def _detect_email_not_opened(self, now):
        sequences = self.env["behavioral.sequence"].sudo().search([
            ("state", "=", "running"), ("trigger_type", "=", "email_not_opened"),
        ])
        # N days -> the longest entry window that needs it, and the mailings
        # the sequences watch (None: any email)
        groups = {}
        for sequence in sequences:
            group = groups.setdefault(sequence.not_opened_days, {"window": 0, "mailings": set()})
            group["window"] = max(group["window"], sequence.entry_window_hours)
            mailing = (sequence.engagement_step_id.mailing_id or sequence.engagement_mailing_id).id
            if group["mailings"] is not None:
                group["mailings"] = group["mailings"] | {mailing} if mailing else None
        self.env.flush_all()
        created = []
        for days, group in groups.items():
            limit = now - timedelta(days=days)
            where = SQL(
                """mt.trace_status = 'sent' AND mt.open_datetime IS NULL
                   AND mt.links_click_datetime IS NULL
                   AND mt.sent_datetime <= %s AND mt.sent_datetime > %s""",
                limit, limit - timedelta(hours=group["window"]))
            if group["mailings"]:
                where = SQL("%s AND mt.mass_mailing_id IN %s", where, tuple(group["mailings"]))
            created += self._sql_engagement_insert(
                "email_not_opened", where,
                occurred_at=SQL("mt.sent_datetime + make_interval(days => %s)", days),
                key_suffix=SQL("%s::text", days),
                payload=SQL("'days', %s", days))
        return created

    def _filter_email_not_opened(self, sequence, refuse):
        """Unopened for another sequence's number of days is not this
        sequence's business (no note)."""
        mine = self.filtered(lambda t: (t.payload or {}).get("days") == sequence.not_opened_days)
        return mine._filter_email_engagement(sequence, refuse)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    not_opened_days = fields.Integer(
        "Unopened For (days)", default=3,
        help="The sequence starts when the email is still unopened this many days after it was sent.")

    @api.constrains("not_opened_days")
    def _check_not_opened_days(self):
        if any(sequence.not_opened_days < 1 for sequence in self):
            raise ValidationError(self.env._("An email is unopened after at least one day."))
