import logging
from datetime import timedelta

from odoo import api, fields, models, tools
from odoo.tools import SQL

from .behavioral_consent import CTX_ERASURE

_logger = logging.getLogger(__name__)

# context key: this write is the confirmation of a double opt-in
CTX_CONFIRMING = "behavioral_double_opt_in_confirming"
# sources for which a double opt-in list asks for a confirmation email: the
# customer's own actions; staff and imports are trusted
DOUBLE_OPT_IN_SOURCES = ("preference_center", "unsubscribe_page", "checkout", "signup", "api")


class MailingSubscription(models.Model):
    """Subscriptions write the consent ledger, and wait for a confirmation on
    double opt-in lists.

    New subscriptions (created, or switched back from opted out) are captured
    as ``newsletter_subscribed`` triggers (:meth:`_behavioral_capture_subscribed`);
    a pending double opt-in is captured once confirmed.

    Double opt-in (``mailing.list.behavioral_double_opt_in``): a subscription
    made by the customer (see ``DOUBLE_OPT_IN_SOURCES``) is kept opted out with
    ``behavioral_pending_since`` set, and a confirmation email with a signed
    link is queued. Following the link (:meth:`_behavioral_confirm`) opts it in
    and records ``confirmed`` in the ledger. The cron
    (:meth:`_cron_behavioral_expire_pending`) forgets requests older than
    ``behavioral_email.double_opt_in_expiry_days``: the subscription stays
    opted out and the link stops working.
    """

    _inherit = "mailing.subscription"

    behavioral_pending_since = fields.Datetime(
        "Awaiting Confirmation Since", readonly=True, copy=False, index="btree_not_null",
        help="Subscription requested on a double opt-in list, not confirmed yet: "
             "nothing is sent until the customer follows the link of the confirmation email.")
    behavioral_confirm_url = fields.Char(compute="_compute_behavioral_confirm_url")

    def _compute_behavioral_confirm_url(self):
        for subscription in self:
            if subscription.behavioral_pending_since:
                subscription.behavioral_confirm_url = (
                    f"{subscription.get_base_url()}/email-preferences/confirm/"
                    f"{subscription.id}/{subscription._behavioral_confirm_token()}")
            else:
                subscription.behavioral_confirm_url = False

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.model_create_multi
    def create(self, vals_list):
        lists = self.env["mailing.list"].sudo().browse(
            {vals["list_id"] for vals in vals_list if vals.get("list_id")})
        double = set(lists.filtered("behavioral_double_opt_in").ids)
        asking = double and self._behavioral_asks_confirmation()
        for vals in vals_list:
            if asking and vals.get("list_id") in double and not vals.get("opt_out"):
                vals.update(opt_out=True, behavioral_pending_since=fields.Datetime.now())
        subscriptions = super().create(vals_list)
        self._behavioral_record([(sub, None) for sub in subscriptions])
        subscriptions.filtered("behavioral_pending_since")._behavioral_send_confirmation()
        subscriptions._behavioral_capture_subscribed()
        return subscriptions

    def write(self, vals):
        if "opt_out" not in vals and "behavioral_pending_since" not in vals:
            return super().write(vals)
        before = {sub.id: (sub.opt_out, bool(sub.behavioral_pending_since)) for sub in self}
        requested = self.browse()
        opting_in = "opt_out" in vals and not vals["opt_out"]
        if opting_in and "behavioral_pending_since" not in vals:
            if self.env.context.get(CTX_CONFIRMING):
                vals = dict(vals, behavioral_pending_since=False)
            elif self._behavioral_asks_confirmation():
                requested = self.filtered(lambda s: s.opt_out and s.list_id.behavioral_double_opt_in)
        if requested:
            # a customer asking again gets a fresh link; the rows stay opted out
            super(MailingSubscription, requested).write(
                dict(vals, opt_out=True, behavioral_pending_since=fields.Datetime.now()))
            requested._behavioral_send_confirmation()
        rest = self - requested
        # switched back from opted out: a new subscription (newsletter_subscribed)
        resubscribed = rest.filtered("opt_out") if opting_in else self.browse()
        res = super(MailingSubscription, rest).write(vals)
        self._behavioral_record([(sub, before[sub.id]) for sub in rest])
        resubscribed._behavioral_capture_subscribed()
        return res

    def unlink(self):
        if not self.env.context.get(CTX_ERASURE):
            rows = []
            for sub in self.filtered(lambda s: not s.behavioral_pending_since):
                if sub.list_id.behavioral_is_topic and sub.opt_out:
                    rows.append((sub, "subscribed"))  # a topic without row is received again
                elif not sub.list_id.behavioral_is_topic and not sub.opt_out:
                    rows.append((sub, "unsubscribed"))
            self.env["behavioral.consent"]._record([
                {"email": sub.contact_id.email_normalized, "list_id": sub.list_id.id, "action": action}
                for sub, action in rows
            ])
        return super().unlink()

    # ------------------------------------------------------------
    # CAPTURE (newsletter_subscribed)
    # ------------------------------------------------------------

    def _behavioral_capture_subscribed(self):
        """Record these subscriptions (those opted in); never raising.

        Imports (the contact import wizard, the generic import) are not
        people subscribing now and are left alone.
        """
        context = self.env.context
        if not self or context.get("behavioral_no_capture") or context.get("import_file"):
            return
        try:
            with self.env.cr.savepoint(flush=False):
                self.env["behavioral.trigger"].sudo()._capture_newsletter_subscribed(self.sudo())
        except Exception:  # noqa: BLE001 - capture must never break the subscription
            _logger.exception("behavioral_email: could not capture subscriptions %s", self.ids)

    @api.model
    def _behavioral_get_ids(self, column, record_ids):
        """Ids of the subscriptions whose ``column`` (contact_id or list_id)
        is in ``record_ids``: list_ids / contact_ids commands write the
        relation table directly, so new rows are found by comparing these."""
        if not record_ids:
            return set()
        self.env.flush_all()
        self.env.cr.execute(SQL(
            "SELECT id FROM mailing_subscription WHERE %s IN %s", SQL.identifier(column), tuple(record_ids)))
        return {row[0] for row in self.env.cr.fetchall()}

    @api.model
    def _behavioral_capture_linked(self, column, record_ids, before):
        """Capture the subscriptions of ``record_ids`` not in ``before``."""
        if self.env.context.get("behavioral_no_capture") or self.env.context.get("import_file"):
            return
        new_ids = self._behavioral_get_ids(column, record_ids) - before
        self.browse(sorted(new_ids))._behavioral_capture_subscribed()

    # ------------------------------------------------------------
    # LEDGER
    # ------------------------------------------------------------

    def _behavioral_record(self, changes):
        """Write the ledger rows for subscriptions that changed.

        :param list changes: (subscription, (opt_out, pending) before or None
            for a new row) pairs
        """
        vals_list = []
        for sub, before in changes:
            pending = bool(sub.behavioral_pending_since)
            if pending:
                continue
            if before is None:
                action = "unsubscribed" if sub.opt_out else "subscribed"
            elif before[1] and not sub.opt_out:
                action = "confirmed"
            elif before[0] == sub.opt_out:
                continue
            else:
                action = "unsubscribed" if sub.opt_out else "subscribed"
            vals_list.append({"email": sub.contact_id.email_normalized, "list_id": sub.list_id.id, "action": action})
        self.env["behavioral.consent"]._record(vals_list)

    @api.model
    def _behavioral_get_rows(self, column, record_ids):
        """{(contact id, list id): opt_out} of the settled subscriptions whose
        ``column`` (contact_id or list_id) is in ``record_ids``, in one query."""
        if not record_ids:
            return {}
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT contact_id, list_id, opt_out FROM mailing_subscription
                WHERE %s IN %s AND behavioral_pending_since IS NULL""",
            SQL.identifier(column), tuple(record_ids)))
        return {(contact_id, list_id): bool(opt_out) for contact_id, list_id, opt_out in self.env.cr.fetchall()}

    @api.model
    def _behavioral_record_rows(self, before, after):
        """Ledger rows for the subscriptions changed between two snapshots of
        :meth:`_behavioral_get_rows` (writes of the relation table)."""
        keys = set(before) | set(after)
        if not keys:
            return
        lists = self.env["mailing.list"].sudo().browse({key[1] for key in keys})
        topics = set(lists.filtered("behavioral_is_topic").ids)
        contacts = self.env["mailing.contact"].sudo().browse({key[0] for key in keys}).exists()
        emails = {contact.id: contact.email_normalized for contact in contacts}
        vals_list = []
        for key in keys:
            old, new = before.get(key), after.get(key)
            if old == new:
                continue
            # a missing row means "subscribed" for topics, "not subscribed" for newsletters
            old_on = (not old) if old is not None else key[1] in topics
            new_on = (not new) if new is not None else key[1] in topics
            if old_on != new_on:
                vals_list.append({"email": emails.get(key[0]), "list_id": key[1],
                                  "action": "subscribed" if new_on else "unsubscribed"})
        self.env["behavioral.consent"]._record(vals_list)

    # ------------------------------------------------------------
    # DOUBLE OPT-IN
    # ------------------------------------------------------------

    @api.model
    def _behavioral_asks_confirmation(self):
        if self.env.context.get(CTX_CONFIRMING):
            return False
        return self.env["behavioral.consent"]._get_source() in DOUBLE_OPT_IN_SOURCES

    def _behavioral_confirm_token(self):
        self.ensure_one()
        return tools.hmac(self.env(su=True), "behavioral_email-double-opt-in", (
            self.id, self.contact_id.email_normalized or "",
            fields.Datetime.to_string(self.behavioral_pending_since) or ""))

    def _behavioral_send_confirmation(self):
        """Queue the confirmation email of these pending subscriptions, in the
        language of the customer behind each address."""
        if not self:
            return
        template = self.env.ref("behavioral_email.mail_template_double_opt_in", raise_if_not_found=False)
        if not template:
            _logger.warning("behavioral_email: the double opt-in email template is missing")
            return
        emails = set(self.contact_id.mapped("email_normalized")) - {False}
        langs = {}
        for row in self.env["res.partner"].sudo().search_read(
                [("email_normalized", "in", list(emails))], ["email_normalized", "lang"], order="id"):
            langs.setdefault(row["email_normalized"], row["lang"])
        by_lang = {}
        for sub in self:
            by_lang.setdefault(langs.get(sub.contact_id.email_normalized) or False, []).append(sub.id)
        for lang, ids in by_lang.items():
            template.sudo().with_context(lang=lang or self.env.lang).send_mail_batch(ids)

    def _behavioral_confirm(self):
        """Confirm these pending subscriptions (their link was followed)."""
        pending = self.filtered("behavioral_pending_since")
        pending.with_context(**{CTX_CONFIRMING: True}).write({"opt_out": False})
        return pending

    @api.model
    def _cron_behavioral_expire_pending(self):
        """Forget double opt-in requests never confirmed: the subscriptions
        stay opted out and their links stop working."""
        days = int(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.double_opt_in_expiry_days", 7) or 7)
        limit = fields.Datetime.now() - timedelta(days=days)
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """UPDATE mailing_subscription SET behavioral_pending_since = NULL
                WHERE behavioral_pending_since < %s RETURNING id""", limit))
        ids = [row[0] for row in self.env.cr.fetchall()]
        self.browse(ids).invalidate_recordset(["behavioral_pending_since"])
        _logger.info("behavioral_email: %s unconfirmed subscription(s) expired", len(ids))
        return ids
