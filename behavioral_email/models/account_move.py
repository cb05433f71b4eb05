import logging

from odoo import models

_logger = logging.getLogger(__name__)


class AccountMove(models.Model):
    _inherit = "account.move"

    def _invoice_paid_hook(self):
        res = super()._invoice_paid_hook()
        self._behavioral_capture_paid()
        return res

    def _behavioral_capture_paid(self):
        """Record that these invoices were paid; never raising."""
        if not self:
            return
        try:
            with self.env.cr.savepoint(flush=False):
                self.env["behavioral.trigger"].sudo()._capture_invoice_paid(self.sudo())
        except Exception:  # noqa: BLE001 - capture must never break accounting
            _logger.exception("behavioral_email: could not capture payment of invoices %s", self.ids)
