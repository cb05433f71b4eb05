"""Checkout: guest contacts are marked as such, and the optional consent
checkbox of the address form is recorded in the consent ledger."""
import json

from odoo.http import request, route

from odoo.addons.website_sale.controllers.main import WebsiteSale


class WebsiteSaleConsent(WebsiteSale):

    def _complete_address_values(self, address_values, address_type, use_delivery_as_billing, order_sudo):
        super()._complete_address_values(address_values, address_type, use_delivery_as_billing, order_sudo)
        if order_sudo._is_anonymous_cart() and request.env.user._is_public():
            # a visitor checking out without an account: the website's guest policy applies
            address_values["behavioral_guest_website_id"] = order_sudo.website_id.id

    @route()
    def shop_address_submit(self, partner_id=None, address_type="billing", use_delivery_as_billing=None,
                            callback=None, required_fields=None, **form_data):
        consent = form_data.pop("behavioral_consent", None)
        response = super().shop_address_submit(
            partner_id=partner_id, address_type=address_type, use_delivery_as_billing=use_delivery_as_billing,
            callback=callback, required_fields=required_fields, **form_data)
        if consent and request.website.behavioral_consent_checkbox:
            # the route answers JSON text (wrapped in a Response by the route decorator)
            body = response if isinstance(response, str) else response.get_data(as_text=True)
            try:
                result = json.loads(body)
            except ValueError:
                result = {}  # not the address feedback: nothing was saved
            if result.get("redirectUrl") and not result.get("messages"):
                order_sudo = request.website.sale_get_order()
                partner = order_sudo.partner_id
                if partner and partner != request.website.user_id.partner_id:
                    partner.sudo()._behavioral_record_optin("checkout")
        return response
