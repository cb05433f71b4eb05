from odoo import api, models


class MailingList(models.Model):
    _inherit = "mailing.list"

    @api.model_create_multi
    def create(self, vals_list):
        lists = super().create(vals_list)
        if any(vals.get("contact_ids") for vals in vals_list):
            self.env["mailing.subscription"]._behavioral_capture_linked("list_id", lists.ids, set())
        return lists

    def write(self, vals):
        if not vals.get("contact_ids"):
            return super().write(vals)
        Subscription = self.env["mailing.subscription"]
        before = Subscription._behavioral_get_ids("list_id", self.ids)
        res = super().write(vals)
        Subscription._behavioral_capture_linked("list_id", self.ids, before)
        return res
