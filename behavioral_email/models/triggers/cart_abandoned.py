from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL


class BehavioralTrigger(models.Model):
    """``cart_abandoned``: a website cart left idle past the threshold.

    Captured as cart activity (``sale.order._behavioral_touch_carts`` stamps
    ``behavioral_cart_activity`` on every change), detected here: one INSERT
    per (website, idle threshold) of the running sequences. One trigger per
    idle spell: the key holds the cart's last change.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("cart_abandoned", "Cart abandoned")], ondelete={"cart_abandoned": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["cart_abandoned"] = {
            "model": "sale.order",
            "goal": "order_placed",
            "settings": ["website_id", "cart_idle_hours"],
        }
        return kinds

    @api.model
    def _detect_cart_abandoned(self, now):
        websites = self.env["website"].sudo().search([])  # pylint: disable=no-search-all
        # (website, idle minutes) -> the longest entry window that needs it
        windows = self._get_detection_windows("cart_abandoned", lambda sequence: [
            (website, sequence._get_cart_idle_minutes(website)) for website in (sequence.website_id or websites)])
        created = []
        self.env.flush_all()
        for (website, idle_minutes), window_hours in windows.items():
            idle_limit = now - timedelta(minutes=idle_minutes)
            oldest = idle_limit - timedelta(hours=window_hours)
            self.env.cr.execute(SQL(
                """
                INSERT INTO behavioral_trigger
                    (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                     dedupe_key, company_id, state, create_uid, create_date, write_uid, write_date)
                SELECT 'cart_abandoned', so.partner_id, 'sale.order', so.id,
                       so.behavioral_cart_activity + make_interval(mins => %(idle)s),
                       jsonb_build_object(
                           'website_id', so.website_id,
                           'idle_minutes', %(idle)s,
                           'goal_since', so.behavioral_cart_activity,
                           'amount_total', so.amount_total),
                       'cart_abandoned:' || so.id || ':'
                           || to_char(so.behavioral_cart_activity, 'YYYYMMDDHH24MISSUS')
                           || ':' || %(idle)s,
                       so.company_id, %(common)s
                  FROM sale_order so
                  JOIN res_partner partner ON partner.id = so.partner_id
                 WHERE so.website_id = %(website)s
                   AND so.state = 'draft'
                   AND so.behavioral_cart_activity IS NOT NULL
                   AND so.behavioral_cart_activity <= %(idle_limit)s
                   AND so.behavioral_cart_activity > %(oldest)s
                   AND COALESCE(partner.email, '') != ''
                   AND NOT EXISTS (
                       SELECT 1 FROM website w JOIN res_users u ON u.id = w.user_id
                        WHERE u.partner_id = so.partner_id)
                   AND EXISTS (SELECT 1 FROM sale_order_line line WHERE line.order_id = so.id)
                   AND NOT EXISTS (
                       SELECT 1 FROM sale_order later
                        WHERE later.partner_id = so.partner_id
                          AND later.state = 'sale'
                          AND later.date_order >= so.behavioral_cart_activity)
                ON CONFLICT (dedupe_key) DO NOTHING
                RETURNING id
                """,
                idle=idle_minutes, common=self._prepare_detected_values(), website=website.id,
                idle_limit=idle_limit, oldest=oldest,
            ))
            created += [row[0] for row in self.env.cr.fetchall()]
        return created

    def _filter_cart_abandoned(self, sequence, refuse):
        """A cart detected for another sequence's idle threshold is not this
        sequence's business (no note: it is not a refusal)."""
        websites = self.env["website"].browse({(t.payload or {}).get("website_id") for t in self} - {None})
        minutes = {website.id: sequence._get_cart_idle_minutes(website) for website in websites}
        return self.filtered(lambda t: (t.payload or {}).get("idle_minutes")
                             == minutes.get((t.payload or {}).get("website_id")))


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    cart_idle_hours = fields.Float(
        "Idle Threshold (hours)",
        help="A cart counts as abandoned once it has not changed for this long. "
             "Leave at 0 to use the website's Abandoned Delay.")

    @api.constrains("cart_idle_hours")
    def _check_cart_idle_hours(self):
        if any(sequence.cart_idle_hours < 0 for sequence in self):
            raise ValidationError(self.env._("The idle threshold cannot be negative."))

    def _get_cart_idle_minutes(self, website):
        """Idle threshold of this sequence for carts of ``website``, in minutes."""
        self.ensure_one()
        hours = self.cart_idle_hours or website.cart_abandoned_delay or 1.0
        return max(int(round(hours * 60)), 1)

    @api.model
    def _get_covered_websites(self):
        """Websites whose carts a running abandoned-cart sequence takes care of."""
        sequences = self.sudo().search([("state", "=", "running"), ("trigger_type", "=", "cart_abandoned")])
        if sequences.filtered(lambda s: not s.website_id):
            return self.env["website"].sudo().search([])  # pylint: disable=no-search-all
        return sequences.website_id
