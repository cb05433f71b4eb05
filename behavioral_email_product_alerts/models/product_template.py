import logging

from odoo import models

_logger = logging.getLogger(__name__)


class ProductTemplate(models.Model):
    _inherit = "product.template"

    def write(self, vals):
        if "list_price" not in vals:
            return super().write(vals)
        old_prices = {template.id: template.list_price for template in self}
        res = super().write(vals)
        self._behavioral_capture_price_drop(old_prices)
        return res

    def _behavioral_capture_price_drop(self, old_prices):
        """Record the price drops of these templates; never raising."""
        lowered = self.filtered(lambda t: t.currency_id.compare_amounts(t.list_price, old_prices[t.id]) < 0)
        if not lowered:
            return
        try:
            with self.env.cr.savepoint():
                self.env["behavioral.trigger"].sudo()._capture_price_drop(lowered.sudo(), old_prices)
        except Exception:  # noqa: BLE001 - capture must never break the product form
            _logger.exception("behavioral_email: could not capture the price drop of %s", lowered.ids)
