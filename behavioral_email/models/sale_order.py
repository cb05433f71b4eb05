import logging
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

_logger = logging.getLogger(__name__)


class SaleOrder(models.Model):
    _inherit = "sale.order"

    behavioral_cart_activity = fields.Datetime(
        "Last Cart Activity", readonly=True, copy=False,
        help="Last time the customer changed this website cart: the idle time "
             "of an abandoned cart is counted from here.")
    behavioral_enrollment_ids = fields.One2many(
        "behavioral.enrollment", "order_id", string="Email Sequences", readonly=True)
    behavioral_enrollment_count = fields.Integer(
        "Sequences", compute="_compute_behavioral_enrollment_count",
        groups="behavioral_email.group_behavioral_user")

    def _compute_behavioral_enrollment_count(self):
        counts = self.env["behavioral.enrollment"]._count_by("order_id", self)
        for order in self:
            order.behavioral_enrollment_count = counts.get(order, 0)

    def action_view_behavioral_enrollments(self):
        self.ensure_one()
        return self.env["behavioral.enrollment"]._action_view([("order_id", "=", self.id)])

    def init(self):
        # Detection reads recent website carts only: keep it independent from
        # the size of the order history.
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS sale_order_behavioral_cart_activity_idx "
            "ON sale_order (behavioral_cart_activity) "
            "WHERE state = 'draft' AND website_id IS NOT NULL"))

    # ------------------------------------------------------------
    # CAPTURE
    # ------------------------------------------------------------

    def _behavioral_touch_carts(self):
        """Record that the customer just changed these carts.

        One UPDATE, never raising: a failure here is logged and the shop's own
        write goes on.
        """
        if not self.ids:
            return
        self.flush_model(["state", "website_id"])
        try:
            with self.env.cr.savepoint(flush=False):
                self.env.cr.execute(SQL(
                    """UPDATE sale_order SET behavioral_cart_activity = %s
                        WHERE id IN %s AND state = 'draft' AND website_id IS NOT NULL""",
                    fields.Datetime.now(), tuple(self.ids)))
        except Exception:  # noqa: BLE001 - capture must never break the shop
            _logger.exception("behavioral_email: could not record cart activity for %s", self.ids)
        self.invalidate_recordset(["behavioral_cart_activity"])

    def _behavioral_capture_confirmed(self):
        """Record the confirmation of these orders; never raising."""
        try:
            with self.env.cr.savepoint(flush=False):
                self.env["behavioral.trigger"].sudo()._capture_order_confirmed(self.sudo())
        except Exception:  # noqa: BLE001 - capture must never break the shop
            _logger.exception("behavioral_email: could not capture confirmation of %s", self.ids)

    @api.model_create_multi
    def create(self, vals_list):
        orders = super().create(vals_list)
        orders.filtered(lambda o: o.website_id and o.order_line)._behavioral_touch_carts()
        return orders

    def write(self, vals):
        res = super().write(vals)
        if "partner_id" in vals:
            # a cart that gets a customer (login at checkout) is a new activity
            self._behavioral_touch_carts()
        return res

    def _action_confirm(self):
        res = super()._action_confirm()
        self._behavioral_capture_confirmed()
        return res

    # ------------------------------------------------------------
    # WEBSITE_SALE INTEGRATION
    # ------------------------------------------------------------

    def _filter_can_send_abandoned_cart_mail(self):
        """website_sale's single recovery email must not go where a running
        behavioral sequence already takes care of the carts."""
        carts = super()._filter_can_send_abandoned_cart_mail()
        covered = self.env["behavioral.sequence"]._get_covered_websites()
        return carts.filtered(lambda order: order.website_id not in covered)

    @api.model
    def _behavioral_init_cart_activity(self):
        """Stamp carts changed lately (at install), from their last write."""
        since = fields.Datetime.now() - timedelta(days=7)
        self.env.cr.execute(SQL(
            """UPDATE sale_order SET behavioral_cart_activity = write_date
                WHERE state = 'draft' AND website_id IS NOT NULL
                  AND behavioral_cart_activity IS NULL AND write_date >= %s""", since))
