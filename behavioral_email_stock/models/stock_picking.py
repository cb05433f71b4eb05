import logging

from odoo import models

_logger = logging.getLogger(__name__)


class StockPicking(models.Model):
    _inherit = "stock.picking"

    def _action_done(self):
        res = super()._action_done()
        self._behavioral_capture_delivered()
        return res

    def _behavioral_capture_delivered(self):
        """Record the orders these validated transfers delivered; never raising."""
        pickings = self.filtered(lambda p: p.sale_id and p.state == "done")
        if not pickings:
            return
        try:
            with self.env.cr.savepoint(flush=False):
                self.env["behavioral.trigger"].sudo()._capture_order_delivered(pickings.sudo())
        except Exception:  # noqa: BLE001 - capture must never break the warehouse
            _logger.exception("behavioral_email: could not capture deliveries %s", pickings.ids)
