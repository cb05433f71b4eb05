from odoo import fields
from odoo.http import request

from odoo.addons.portal.controllers.portal import CustomerPortal


class BehavioralCustomerPortal(CustomerPortal):
    """The customer may give their birthday on the portal's *My details*."""

    def _get_optional_fields(self):
        return super()._get_optional_fields() + ["behavioral_birthday"]

    def details_form_validate(self, data, partner_creation=False):
        error, error_message = super().details_form_validate(data, partner_creation=partner_creation)
        birthday = data.get("behavioral_birthday")
        if birthday:
            try:
                day = fields.Date.to_date(birthday)
            except (TypeError, ValueError):
                day = None
            if not day or day.year < 1900 or day > fields.Date.context_today(request.env.user):
                error["behavioral_birthday"] = "error"
                error_message.append(request.env._("Please enter your birthday as a date in the past."))
        return error, error_message
