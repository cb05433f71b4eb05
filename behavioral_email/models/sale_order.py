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

    # -- measurement: attribution to the sequences' emails (last touch) --
    behavioral_sequence_id = fields.Many2one(
        "behavioral.sequence", string="Email Sequence", readonly=True, copy=False,
        ondelete="set null", index="btree_not_null",
        help="The sequence whose email the customer opened or clicked last before ordering, "
             "within its attribution window.")
    behavioral_step_id = fields.Many2one(
        "behavioral.sequence.step", string="Sequence Step", readonly=True, copy=False, ondelete="set null")
    behavioral_variant_id = fields.Many2one(
        "behavioral.step.variant", string="Sequence Variant", readonly=True, copy=False, ondelete="set null")
    behavioral_trace_id = fields.Many2one(
        "behavioral.trace", string="Sequence Email", readonly=True, copy=False,
        ondelete="set null", index="btree_not_null")
    # --

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
        self._behavioral_attribute_safely()  # measurement
        return res

    # -- measurement: attribution --
    def _behavioral_attribute_safely(self):
        """Attribute these orders; never raising."""
        try:
            with self.env.cr.savepoint(flush=False):
                self.sudo()._behavioral_attribute()
        except Exception:  # noqa: BLE001 - capture must never break the shop
            _logger.exception("behavioral_email: could not attribute orders %s", self.ids)

    def _behavioral_attribute(self):
        """Credit each order to the email its customer touched last.

        The touches are the opens and clicks of any mailing's email to the
        customer's address (``mailing.trace``: the sequences' emails and the
        newsletters alike), within the attribution window before the order:
        after a click, the sequence's ``attribution_click_days``; after an
        open, its ``attribution_open_days`` (5 and 1 days for other mailings).
        The latest touch wins; when it is a sequence's email, the order
        records that sequence, step, variant and trace, otherwise nothing
        (another mailing gets the credit). One query for the whole batch.
        """
        if not self.ids:
            return
        for model, fnames in (("sale.order", ["partner_id", "date_order"]), ("res.partner", ["email_normalized"]),
                              ("mailing.trace", ["email", "open_datetime", "links_click_datetime"]),
                              ("behavioral.trace", ["mailing_trace_id", "sequence_id", "step_id", "variant_id"]),
                              ("behavioral.sequence", ["attribution_click_days", "attribution_open_days"])):
            self.env[model].flush_model(fnames)
        Sequence = self.env["behavioral.sequence"]
        self.env.cr.execute(SQL(
            """WITH orders AS (
                   SELECT so.id, so.date_order, partner.email_normalized AS email
                     FROM sale_order so
                     JOIN res_partner partner ON partner.id = so.partner_id
                    WHERE so.id IN %(ids)s AND partner.email_normalized IS NOT NULL
               ), touches AS (
                   SELECT o.id AS order_id, mt.id AS mailing_trace_id, bt.id AS trace_id,
                          bt.sequence_id, bt.step_id, bt.variant_id,
                          CASE WHEN mt.links_click_datetime <= o.date_order
                                    AND mt.links_click_datetime >= o.date_order
                                        - COALESCE(s.attribution_click_days, %(click)s) * interval '1 day'
                               THEN mt.links_click_datetime
                               WHEN mt.open_datetime <= o.date_order
                                    AND mt.open_datetime >= o.date_order
                                        - COALESCE(s.attribution_open_days, %(open)s) * interval '1 day'
                               THEN mt.open_datetime
                          END AS touched_at
                     FROM orders o
                     JOIN mailing_trace mt ON mt.email = o.email
                          AND (mt.open_datetime IS NOT NULL OR mt.links_click_datetime IS NOT NULL)
                     LEFT JOIN behavioral_trace bt ON bt.mailing_trace_id = mt.id
                     LEFT JOIN behavioral_sequence s ON s.id = bt.sequence_id
               ), last_touch AS (
                   SELECT DISTINCT ON (order_id) order_id, trace_id, sequence_id, step_id, variant_id
                     FROM touches
                    WHERE touched_at IS NOT NULL
                    ORDER BY order_id, touched_at DESC, mailing_trace_id DESC
               )
               UPDATE sale_order so
                  SET behavioral_trace_id = last_touch.trace_id,
                      behavioral_sequence_id = last_touch.sequence_id,
                      behavioral_step_id = last_touch.step_id,
                      behavioral_variant_id = last_touch.variant_id
                 FROM sale_order target
                 LEFT JOIN last_touch ON last_touch.order_id = target.id
                WHERE so.id = target.id AND target.id IN %(ids)s""",
            ids=tuple(self.ids),
            click=Sequence._fields["attribution_click_days"].default(Sequence),
            open=Sequence._fields["attribution_open_days"].default(Sequence)))
        self.invalidate_recordset([
            "behavioral_trace_id", "behavioral_sequence_id", "behavioral_step_id", "behavioral_variant_id"])
    # --

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
