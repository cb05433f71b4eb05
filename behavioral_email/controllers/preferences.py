"""The customer's email preference page.

Two ways in, one page: ``/my/email-preferences`` for a logged-in customer, and
``/email-preferences/<partner id>/<token>`` from the "Manage preferences" link
of every marketing email (signed, bound to the contact and its address; no
login). Plain HTML forms posting with a CSRF token: it works without
JavaScript. A wrong token answers 404, whatever is wrong with it; bad input
answers 400 and changes nothing.
"""
import json
import re
from datetime import date, timedelta

from markupsafe import Markup
from werkzeug.exceptions import NotFound

from odoo import fields, http
from odoo.http import request
from odoo.tools import consteq

from ..models.behavioral_consent import CTX_DETAILS, CTX_PARTNER, CTX_SOURCE
from ..models.mailing_subscription import CTX_CONFIRMING

FREQUENCIES = ("all", "weekly", "monthly")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LAST_PAUSE_DAY = date(9998, 12, 31)
MAX_ID = 2**31 - 1
HISTORY_LIMIT = 100
FEEDBACK_MAX = 1000
ACTIONS = "<any(unsubscribe, resubscribe, export, delete):action>"


class InvalidInput(Exception):
    """A form value the page never offers: answered 400, nothing changed."""


class EmailPreferencesController(http.Controller):

    # ------------------------------------------------------------
    # ROUTES
    # ------------------------------------------------------------

    @http.route("/my/email-preferences", type="http", auth="user", website=True,
                methods=["GET", "POST"], sitemap=False)
    def portal_email_preferences(self, **post):
        return self._page(request.env.user.partner_id.sudo(), "/my/email-preferences", post)

    @http.route(f"/my/email-preferences/{ACTIONS}", type="http", auth="user", website=True,
                methods=["GET", "POST"], sitemap=False)
    def portal_email_preferences_action(self, action, **post):
        return self._action(request.env.user.partner_id.sudo(), "/my/email-preferences", action, post)

    @http.route("/email-preferences/<int:partner_id>/<string:token>", type="http", auth="public",
                website=True, methods=["GET", "POST"], sitemap=False)
    def email_preferences(self, partner_id, token, **post):
        partner = self._check_token(partner_id, token)
        if request.httprequest.method == "GET":
            redirect = self._redirect_to_partner_lang(partner)
            if redirect:
                return redirect
        return self._page(partner, f"/email-preferences/{partner.id}/{token}", post, token_mode=True)

    @http.route(f"/email-preferences/<int:partner_id>/<string:token>/{ACTIONS}", type="http",
                auth="public", website=True, methods=["GET", "POST"], sitemap=False)
    def email_preferences_action(self, partner_id, token, action, **post):
        partner = self._check_token(partner_id, token)
        return self._action(partner, f"/email-preferences/{partner.id}/{token}", action, post, token_mode=True)

    @http.route("/email-preferences/confirm/<int:subscription_id>/<string:token>", type="http",
                auth="public", website=True, methods=["GET", "POST"], sitemap=False)
    def email_preferences_confirm(self, subscription_id, token, **post):
        """Double opt-in: the link of the confirmation email. GET shows a button,
        POST confirms, so that mail scanners following links confirm nothing."""
        subscription = request.env["mailing.subscription"].sudo()
        if 0 < subscription_id <= MAX_ID:
            subscription = subscription.browse(subscription_id).exists()
        if not subscription or not subscription.behavioral_pending_since or not consteq(
                subscription._behavioral_confirm_token(), token):
            raise NotFound()
        values = {"subscription": subscription, "topic": subscription.list_id._behavioral_get_label(),
                  "action_url": request.httprequest.path}
        days = int(request.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.double_opt_in_expiry_days", 7) or 7)
        if subscription.behavioral_pending_since < fields.Datetime.now() - timedelta(days=days):
            return request.render("behavioral_email.email_preferences_confirm", dict(values, expired=True),
                                  status=410)
        if request.httprequest.method == "POST":
            subscription.with_context(**{CTX_SOURCE: "double_opt_in", CTX_CONFIRMING: True})._behavioral_confirm()
            return request.render("behavioral_email.email_preferences_confirm", dict(values, confirmed=True))
        return request.render("behavioral_email.email_preferences_confirm", values)

    # ------------------------------------------------------------
    # ACCESS
    # ------------------------------------------------------------

    def _check_token(self, partner_id, token):
        """The contact of a preference link, sudo-ed; 404 for any bad link, so
        that nothing tells an existing contact from a missing one."""
        partner = request.env["res.partner"].sudo()
        if 0 < partner_id <= MAX_ID:
            partner = partner.browse(partner_id).exists()
        if not partner or not partner.email_normalized or not consteq(
                partner._behavioral_preference_token(), token or ""):
            raise NotFound()
        return partner

    def _redirect_to_partner_lang(self, partner):
        """Open the page in the customer's language, unless the link already
        names a language (the customer chose one)."""
        website = request.website
        lang = website.language_ids.filtered(lambda l: l.code == partner.lang)
        if not lang or lang.code == request.lang.code:
            return None
        first = request.httprequest.path.split("/")[1]
        if first in website.language_ids.mapped("url_code"):
            return None
        query = request.httprequest.query_string.decode()
        return request.redirect(f"/{lang.url_code}{request.httprequest.path}" + (f"?{query}" if query else ""))

    def _context(self, partner):
        return {CTX_SOURCE: "preference_center", CTX_PARTNER: partner.id}

    # ------------------------------------------------------------
    # PAGE
    # ------------------------------------------------------------

    def _page(self, partner, base_path, post, token_mode=False):
        if request.httprequest.method == "POST":
            try:
                changes = self._parse_preferences(partner, post)
            except InvalidInput as error:
                return self._render(partner, base_path, token_mode, error=str(error), status=400)
            self._apply_preferences(partner, *changes)
            return request.redirect(f"{base_path}?saved=1")
        message = False
        if request.params.get("saved"):
            message = request.env._("Your preferences are saved.")
        elif request.params.get("unsubscribed"):
            message = request.env._("You will receive no more marketing email from us.")
        elif request.params.get("resubscribed"):
            message = request.env._("Welcome back: you receive our marketing email again.")
        return self._render(partner, base_path, token_mode, message=message)

    def _parse_preferences(self, partner, post):
        """Validate the whole form before anything is written.

        :return tuple: ({mailing.list: wanted}, frequency or None, pause date,
            False (no pause) or None (unchanged))
        :raise InvalidInput: for any value the page never offers
        """
        env = request.env
        offered = env["mailing.list"]._behavioral_get_offered(partner.email_normalized)
        offered_ids = set(offered.ids)
        chosen = set()
        for key in post:
            if not key.startswith("topic_"):
                continue
            raw = key[len("topic_"):]
            if not raw.isdigit() or int(raw) not in offered_ids:
                raise InvalidInput(env._("This topic is not available."))
            chosen.add(int(raw))
        shown = offered
        if post.get("topics") is not None:
            raw_ids = [part for part in post["topics"].split(",") if part]
            if not all(part.isdigit() and int(part) in offered_ids for part in raw_ids):
                raise InvalidInput(env._("This topic is not available."))
            shown = offered.filtered(lambda l: l.id in {int(part) for part in raw_ids})
            if chosen - set(shown.ids):
                raise InvalidInput(env._("This topic is not available."))
        frequency = post.get("frequency")
        if frequency is not None and frequency not in FREQUENCIES:
            raise InvalidInput(env._("Choose how often you want to hear from us."))
        pause = post.get("pause_until")
        if pause is not None:
            pause = pause.strip()
            if not pause:
                pause = False
            else:
                try:
                    if not DATE_RE.match(pause):
                        raise ValueError(pause)
                    pause = date.fromisoformat(pause)
                except ValueError:
                    raise InvalidInput(env._("The pause date is not a valid date.")) from None
                today = fields.Date.context_today(partner.with_context(tz=partner.tz or "UTC"))
                if pause <= today or pause > LAST_PAUSE_DAY:
                    raise InvalidInput(env._("Choose a pause date after today."))
        return {mlist: mlist.id in chosen for mlist in shown}, frequency, pause

    def _apply_preferences(self, partner, wanted, frequency, pause):
        ctx = self._context(partner)
        request.env["mailing.list"].sudo().with_context(**ctx)._behavioral_set_subscriptions(partner, wanted)
        vals = {}
        if frequency and frequency != partner.behavioral_frequency:
            vals["behavioral_frequency"] = frequency
        if pause is not None and pause != (partner.behavioral_pause_until or False):
            vals["behavioral_pause_until"] = pause
        if vals:
            partner.with_context(**ctx).write(vals)

    def _render(self, partner, base_path, token_mode, message=False, error=False, status=200):
        env = request.env
        email = partner.email_normalized
        Lists = env["mailing.list"].sudo()
        states = Lists._behavioral_get_states(email)
        offered = Lists._behavioral_get_offered(email)
        Consent = env["behavioral.consent"].sudo()
        history = Consent.search(Consent._get_history_domain(partner), limit=HISTORY_LIMIT)
        today = fields.Date.context_today(partner.with_context(tz=partner.tz or "UTC"))
        pause = partner.behavioral_pause_until
        values = {
            "partner": partner,
            "email": partner.email,
            "base_path": base_path,
            "token_mode": token_mode,
            "page_name": "email_preferences",
            "no_breadcrumbs": token_mode,
            "topics": [{
                "id": mlist.id,
                "label": mlist._behavioral_get_label(),
                "description": mlist.behavioral_description,
                "subscribed": mlist._behavioral_is_subscribed(states),
                "pending": states.get(mlist.id) == "pending",
            } for mlist in offered],
            "topic_ids": ",".join(str(i) for i in offered.ids),
            "frequency": partner.behavioral_frequency,
            "frequencies": env["res.partner"]._fields["behavioral_frequency"]._description_selection(env),
            "pause_until": fields.Date.to_string(pause) if pause and pause > today else "",
            "pause_min": fields.Date.to_string(today + timedelta(days=1)),
            "blocklisted": bool(email) and bool(env["mail.blacklist"].sudo().search_count(
                [("email", "=", email)], limit=1)),
            "history": history,
            "action_labels": dict(Consent._fields["action"]._description_selection(env)),
            "source_labels": dict(Consent._fields["source"]._description_selection(env)),
            "reasons": env["mailing.subscription.optout"].sudo().search([]),
            "message": message,
            "error": error,
        }
        return request.render("behavioral_email.email_preferences", values, status=status)

    # ------------------------------------------------------------
    # ACTIONS: unsubscribe from all, subscribe again, export, delete
    # ------------------------------------------------------------

    def _action(self, partner, base_path, action, post, token_mode=False):
        method = request.httprequest.method
        if action == "delete" and method == "GET":
            return request.render("behavioral_email.email_preferences_delete", {
                "partner": partner, "base_path": base_path, "token_mode": token_mode,
                "no_breadcrumbs": token_mode, "page_name": "email_preferences",
            })
        if method != "POST":
            return request.redirect(base_path)
        return getattr(self, f"_action_{action}")(partner, base_path, token_mode, post)

    def _action_unsubscribe(self, partner, base_path, token_mode, post):
        env = request.env
        if not partner.email_normalized:
            return self._render(partner, base_path, token_mode,
                                error=env._("Your account has no valid email address."), status=400)
        reason = env["mailing.subscription.optout"].sudo()
        raw = (post.get("reason_id") or "").strip()
        if raw:
            if not raw.isdigit() or not 0 < int(raw) <= MAX_ID:
                return self._render(partner, base_path, token_mode,
                                    error=env._("This reason is not available."), status=400)
            reason = reason.browse(int(raw)).exists()
            if not reason:
                return self._render(partner, base_path, token_mode,
                                    error=env._("This reason is not available."), status=400)
        feedback = (post.get("feedback") or "").strip()[:FEEDBACK_MAX]
        details = " – ".join(filter(None, [reason.name, feedback])) or False
        ctx = dict(self._context(partner), **{CTX_DETAILS: details})
        message = Markup("<p>%s</p>") % env._("Unsubscribed from all marketing email on the preference page.")
        if feedback:
            message += Markup("<p>%s</p>") % feedback
        entry = env["mail.blacklist"].sudo().with_context(**ctx)._add(partner.email_normalized, message=message)
        if reason:
            entry.opt_out_reason_id = reason
        return request.redirect(f"{base_path}?unsubscribed=1")

    def _action_resubscribe(self, partner, base_path, token_mode, post):
        if not partner.email_normalized:
            return self._render(partner, base_path, token_mode,
                                error=request.env._("Your account has no valid email address."), status=400)
        message = Markup("<p>%s</p>") % request.env._("Subscribed again on the preference page.")
        request.env["mail.blacklist"].sudo().with_context(**self._context(partner))._remove(
            partner.email_normalized, message=message)
        return request.redirect(f"{base_path}?resubscribed=1")

    def _action_export(self, partner, base_path, token_mode, post):
        data = partner._behavioral_export_data()
        return request.make_response(
            json.dumps(data, indent=2, ensure_ascii=False, default=str),
            headers=[
                ("Content-Type", "application/json; charset=utf-8"),
                ("Content-Disposition", 'attachment; filename="my-email-data.json"'),
                ("Cache-Control", "no-store"),
            ])

    def _action_delete(self, partner, base_path, token_mode, post):
        if post.get("confirm") != "1":
            return self._render(partner, base_path, token_mode,
                                error=request.env._("Confirm that you want your data deleted."), status=400)
        partner.with_context(**self._context(partner))._behavioral_erase()
        return request.render("behavioral_email.email_preferences_deleted", {
            "token_mode": token_mode, "no_breadcrumbs": token_mode, "page_name": "email_preferences",
        })
