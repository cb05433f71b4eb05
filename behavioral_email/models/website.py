from odoo import fields, models


class Website(models.Model):
    _inherit = "website"

    behavioral_consent_checkbox = fields.Boolean(
        "Ask for Email Consent",
        help="Show an optional checkbox at checkout and sign-up; ticking it is recorded "
             "in the consent history.")
    behavioral_consent_label = fields.Char(
        "Consent Checkbox Label", translate=True,
        help="Leave empty for “Email me reminders and offers”, translated in every language.")
    behavioral_guest_policy = fields.Selection(
        [("never", "Never"),
         ("checkbox", "Only when they tick the consent checkbox"),
         ("any", "Like any customer")],
        string="Marketing to Guests", default="checkbox", required=True,
        help="Whether marketing sequences email customers who checked out without an "
             "account (their contact was created by the shop).")
