from odoo import fields, models


class MailingMailing(models.Model):
    _inherit = "mailing.mailing"

    use_in_behavioral = fields.Boolean(
        "Used in Behavioral Sequences", readonly=True, copy=False, index=True,
        help="Technical mailing holding the content and tracking of a sequence step; "
             "it is sent by the sequence, never on its own.")
