from odoo import api, models

from .behavioral_consent import CTX_ERASURE


class MailingContact(models.Model):
    """Subscriptions made through the contact's ``list_ids`` write the relation
    table directly, not through mailing.subscription: they are captured
    (newsletter_subscribed) and recorded in the consent ledger here, and so
    are the subscriptions removed with the contact."""

    _inherit = "mailing.contact"

    @api.model_create_multi
    def create(self, vals_list):
        contacts = super().create(vals_list)
        if any(vals.get("list_ids") for vals in vals_list):
            # subscription_ids commands go through mailing.subscription.create;
            # list_ids ones write the relation table and are captured here
            Subscription = self.env["mailing.subscription"]
            Subscription._behavioral_capture_linked("contact_id", contacts.ids, set())
            Subscription._behavioral_record_rows({}, Subscription._behavioral_get_rows("contact_id", contacts.ids))
        return contacts

    def write(self, vals):
        if "list_ids" not in vals or self.env.context.get(CTX_ERASURE):
            return super().write(vals)
        Subscription = self.env["mailing.subscription"]
        before_ids = Subscription._behavioral_get_ids("contact_id", self.ids)
        before = Subscription._behavioral_get_rows("contact_id", self.ids)
        res = super().write(vals)
        Subscription._behavioral_capture_linked("contact_id", self.ids, before_ids)
        Subscription._behavioral_record_rows(before, Subscription._behavioral_get_rows("contact_id", self.ids))
        return res

    def unlink(self):
        if not self.env.context.get(CTX_ERASURE):
            # subscriptions go with the contact (ON DELETE CASCADE, no ORM unlink)
            self.subscription_ids.unlink()
        return super().unlink()
