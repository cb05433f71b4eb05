from odoo import api, fields, models


class BehavioralSequencePreviewLine(models.TransientModel):
    """One past trigger in a sequence preview: would it have enrolled, why
    not, and how many emails the customer would get."""

    _name = "behavioral.sequence.preview.line"
    _description = "Behavioral Sequence Preview Line"
    _order = "occurred_at desc, id"

    preview_id = fields.Many2one("behavioral.sequence.preview", required=True, ondelete="cascade")
    trigger_id = fields.Many2one("behavioral.trigger", ondelete="cascade")
    partner_id = fields.Many2one("res.partner", string="Customer")
    occurred_at = fields.Datetime("Triggered On")
    would_enter = fields.Boolean()
    reason = fields.Text("Refused Because")
    email_count = fields.Integer("Emails of This Sequence")
    other_email_count = fields.Integer(
        "Emails from Running Sequences", help="Emails the running sequences sent this customer in the period.")
    total_email_count = fields.Integer("Total Emails", compute="_compute_total_email_count")

    @api.depends("email_count", "other_email_count")
    def _compute_total_email_count(self):
        for line in self:
            line.total_email_count = line.email_count + line.other_email_count
