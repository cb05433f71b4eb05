"""Sign-up: the optional consent checkbox is recorded in the consent ledger."""
from odoo.http import request

from odoo.addons.auth_signup.controllers.main import AuthSignupHome


class AuthSignupConsent(AuthSignupHome):

    def _signup_with_values(self, token, values):
        super()._signup_with_values(token, values)
        website = getattr(request, "website", None)
        if request.params.get("behavioral_consent") and website and website.behavioral_consent_checkbox:
            user = request.env["res.users"].sudo().search([("login", "=", values.get("login"))], limit=1)
            user.partner_id._behavioral_record_optin("signup")
