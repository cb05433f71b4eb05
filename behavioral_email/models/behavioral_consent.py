import logging

from odoo import api, fields, models, tools
from odoo.exceptions import UserError
from odoo.http import request

_logger = logging.getLogger(__name__)

CONSENT_ACTIONS = [
    ("subscribed", "Subscribed"),
    ("unsubscribed", "Unsubscribed"),
    ("paused", "Paused"),
    ("resumed", "Resumed"),
    ("frequency", "Frequency changed"),
    ("blocklisted", "Unsubscribed from all marketing email"),
    ("unblocklisted", "Subscribed again to marketing email"),
    ("confirmed", "Subscription confirmed"),
]

CONSENT_SOURCES = [
    ("preference_center", "Preference page"),
    ("one_click", "One-click unsubscribe"),
    ("unsubscribe_page", "Unsubscribe page"),
    ("checkout", "Checkout"),
    ("signup", "Sign-up"),
    ("backend", "Back office"),
    ("import", "Import"),
    ("api", "API or automated"),
    ("double_opt_in", "Confirmation email"),
]

# context keys understood by the ledger
CTX_SOURCE = "behavioral_consent_source"
CTX_PARTNER = "behavioral_consent_partner_id"
CTX_ERASURE = "behavioral_consent_erasure"
CTX_DETAILS = "behavioral_consent_details"


class BehavioralConsent(models.Model):
    """One change of a person's marketing consent: the consent ledger.

    Append-only. Rows are written by model-level hooks, so that every path
    lands here whatever the screen or route used:

    * ``mail.blacklist`` create / write of ``active`` / unlink: ``blocklisted``,
      ``unblocklisted`` (mass_mailing's unsubscribe pages and RFC 8058
      one-click route, the back office, imports);
    * ``mailing.subscription`` create / write of ``opt_out`` / unlink, and
      ``mailing.contact`` writes of ``list_ids``: ``subscribed``,
      ``unsubscribed``, ``confirmed`` (double opt-in);
    * ``res.partner`` writes of ``behavioral_frequency`` and
      ``behavioral_pause_until``: ``frequency``, ``paused``, ``resumed``;
    * the checkout and sign-up checkbox: ``subscribed`` for all marketing
      (``list_id`` empty).

    ``source`` comes from the context key ``behavioral_consent_source`` when a
    caller knows it, else from the request (route, user), else ``api``. Rows
    are never written nor deleted, except by erasure
    (:meth:`res.partner._behavioral_erase`), which anonymizes them under the
    context key ``behavioral_consent_erasure`` and keeps only ``email_hash``.
    """

    _name = "behavioral.consent"
    _description = "Marketing Consent Change"
    _order = "date desc, id desc"
    _rec_name = "action"

    partner_id = fields.Many2one("res.partner", string="Contact", ondelete="set null", index="btree_not_null",
                                 readonly=True)
    email = fields.Char(readonly=True, help="Normalized address the change applies to.")
    email_hash = fields.Char(
        readonly=True, index=True,
        help="Keyed hash of the address: what is left once the contact's data is erased.")
    list_id = fields.Many2one(
        "mailing.list", string="Topic", ondelete="set null", readonly=True,
        help="Empty when the change applies to all marketing email.")
    action = fields.Selection(CONSENT_ACTIONS, required=True, readonly=True)
    source = fields.Selection(CONSENT_SOURCES, required=True, readonly=True)
    details = fields.Char(readonly=True, help="The new value: frequency, pause date, reason given.")
    date = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now, index=True)
    ip = fields.Char("IP Address", readonly=True)
    user_agent = fields.Char(readonly=True)
    user_id = fields.Many2one("res.users", string="Changed By", ondelete="set null", readonly=True,
                              help="The staff member who made the change, if any.")
    erased = fields.Boolean(readonly=True, help="The contact's data was erased: only the hash is left.")

    # ------------------------------------------------------------
    # ORM: append-only
    # ------------------------------------------------------------

    def write(self, vals):
        if not self.env.context.get(CTX_ERASURE):
            raise UserError(self.env._("The consent history cannot be changed."))
        return super().write(vals)

    def unlink(self):
        if not self.env.context.get(CTX_ERASURE):
            raise UserError(self.env._("The consent history cannot be deleted."))
        return super().unlink()

    # ------------------------------------------------------------
    # RECORDING
    # ------------------------------------------------------------

    @api.model
    def _hash_email(self, email):
        """Keyed hash of a normalized address (the database secret is the key)."""
        return tools.hmac(self.env(su=True), "behavioral_email-consent-email", email or "")

    @api.model
    def _get_source(self):
        """Where the change being recorded comes from."""
        source = self.env.context.get(CTX_SOURCE)
        if source:
            return source
        if self.env.context.get("import_file"):
            return "import"
        if not request:
            return "api"
        path = request.httprequest.path or ""
        if "/unsubscribe_oneclick" in path:
            return "one_click"
        if "/mailing/" in path:
            return "unsubscribe_page"
        if "email-preferences" in path:
            return "preference_center"
        if path.startswith(("/xmlrpc", "/jsonrpc", "/json/")):
            return "api"
        if not self.env.user.share:
            return "backend"
        return "api"

    @api.model
    def _get_request_values(self):
        if not request:
            return {}
        httprequest = request.httprequest
        return {
            "ip": httprequest.remote_addr,
            "user_agent": (httprequest.user_agent.string or "")[:512] or False,
        }

    @api.model
    def _record(self, vals_list):
        """Append ledger rows. Each dict holds action and email or partner_id,
        optionally list_id, details, source; the rest is filled in here.

        Partners are found by address in one query when not given.
        """
        vals_list = [vals for vals in vals_list if vals.get("email") or vals.get("partner_id")]
        if not vals_list or self.env.context.get(CTX_ERASURE):
            return self.browse()
        source = self._get_source()
        extra = self._get_request_values()
        user = self.env.user
        staff_id = user.id if not user.share else False
        Partner = self.env["res.partner"].sudo().with_context(active_test=False)
        # addresses of the partners given, partners of the addresses given
        given = Partner.browse({vals["partner_id"] for vals in vals_list if vals.get("partner_id")})
        given.fetch(["email_normalized"])
        forced_partner = self.env.context.get(CTX_PARTNER)
        missing = {tools.email_normalize(vals["email"]) for vals in vals_list
                   if not vals.get("partner_id") and vals.get("email")} - {False, None}
        by_email = {}
        if forced_partner:
            by_email = dict.fromkeys(missing, forced_partner)
        elif missing:
            for row in Partner.search_read([("email_normalized", "in", list(missing))],
                                           ["email_normalized"], order="id"):
                by_email.setdefault(row["email_normalized"], row["id"])
        rows = []
        for vals in vals_list:
            vals = dict(vals)
            if vals.get("partner_id"):
                vals.setdefault("email", Partner.browse(vals["partner_id"]).email_normalized)
            email = tools.email_normalize(vals.get("email")) or vals.get("email") or False
            vals["email"] = email
            vals.setdefault("partner_id", by_email.get(email, False))
            vals.setdefault("source", source)
            if not vals.get("details"):
                vals["details"] = self.env.context.get(CTX_DETAILS) or False
            vals["email_hash"] = self._hash_email(email) if email else False
            vals["user_id"] = staff_id
            rows.append(dict(extra, **vals))
        return self.sudo().create(rows)

    @api.model
    def _get_history_domain(self, partner):
        """The rows a customer sees: theirs, and those of their address."""
        partner = partner.sudo()
        domain = [("partner_id", "=", partner.id)]
        if partner.email_normalized:
            domain = ["|", ("email_hash", "=", self._hash_email(partner.email_normalized))] + domain
        return domain
