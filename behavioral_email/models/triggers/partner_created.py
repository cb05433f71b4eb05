from odoo import api, fields, models


class BehavioralTrigger(models.Model):
    """``partner_created``: a new contact with an email address.

    Captured by ``res.partner.create`` (and by ``write`` when a contact created
    within the last day gets its address); one trigger per contact.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("partner_created", "New contact")], ondelete={"partner_created": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["partner_created"] = {"model": "res.partner", "goal": "none", "settings": []}
        return kinds

    @api.model
    def _capture_partner_created(self, partners):
        now = fields.Datetime.now()
        return self._insert_triggers([{
            "trigger_type": "partner_created",
            "partner_id": partner.id,
            "res_model": "res.partner",
            "res_id": partner.id,
            "occurred_at": now,
            "dedupe_key": f"partner_created:{partner.id}",
            "company_id": partner.company_id.id,
            "payload": {},
        } for partner in partners if partner.email and not partner.is_public])
