import logging

from odoo import models

_logger = logging.getLogger(__name__)


class StockMove(models.Model):
    _inherit = "stock.move"

    def _action_done(self, cancel_backorder=False):
        watch = self._behavioral_watch_restock()
        moves = super()._action_done(cancel_backorder=cancel_backorder)
        if watch:
            self._behavioral_capture_restock(moves, watch)
        return moves

    def _behavioral_watch_restock(self):
        """The free quantities the restock capture compares with; never raising."""
        if not any(move.location_dest_id.usage == "internal" for move in self):
            return None  # nothing enters the stock (a delivery...)
        try:
            with self.env.cr.savepoint():
                return self.env["behavioral.trigger"].sudo()._get_restock_watch(self.sudo())
        except Exception:  # noqa: BLE001 - capture must never break the warehouse
            _logger.exception("behavioral_email: could not read the stock of moves %s", self.ids)
        return None

    def _behavioral_capture_restock(self, moves, watch):
        """Record the products these done moves brought back in stock; never raising."""
        try:
            with self.env.cr.savepoint():
                self.env["behavioral.trigger"].sudo()._capture_back_in_stock(moves.sudo(), watch)
        except Exception:  # noqa: BLE001 - capture must never break the warehouse
            _logger.exception("behavioral_email: could not capture the restock of moves %s", moves.ids)
