from odoo import models


class MailingContactImport(models.TransientModel):
    _inherit = "mailing.contact.import"

    def action_import(self):
        """Imported contacts did not just subscribe: no newsletter trigger."""
        return super(MailingContactImport, self.with_context(behavioral_no_capture=True)).action_import()
