from odoo import api, models


class MailingContact(models.Model):
    _inherit = "mailing.contact"

    @api.model_create_multi
    def create(self, vals_list):
        contacts = super().create(vals_list)
        if any(vals.get("list_ids") for vals in vals_list):
            # subscription_ids commands go through mailing.subscription.create;
            # list_ids ones write the relation table and are captured here
            self.env["mailing.subscription"]._behavioral_capture_linked("contact_id", contacts.ids, set())
        return contacts

    def write(self, vals):
        if not vals.get("list_ids"):
            return super().write(vals)
        Subscription = self.env["mailing.subscription"]
        before = Subscription._behavioral_get_ids("contact_id", self.ids)
        res = super().write(vals)
        Subscription._behavioral_capture_linked("contact_id", self.ids, before)
        return res
