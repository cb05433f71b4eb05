from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL


class BehavioralTrigger(models.Model):
    """``customer_inactive``: a customer who ordered before has not ordered
    again for too long (win-back).

    Too long is the sequence's number of days or, with a factor set and at
    least two orders, that factor times the customer's own median gap
    between orders, never less than the floor nor more than the number of
    days: a weekly buyer is missed after a few weeks, nobody after more than
    the number of days.

    Detected: one INSERT for all the running sequences' settings, reading
    only the customers whose last confirmed order falls in the range some
    setting can lapse now (within the entry window), through the partial
    index made in :meth:`init`. One trigger per lapse and setting: the key
    holds the customer, the date of the last order and the setting.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("customer_inactive", "Customer inactive")], ondelete={"customer_inactive": "cascade"})

    def init(self):
        super().init()
        # a customer's confirmed orders in date order: the last one, the ones
        # after it and the gaps between them are all read from here
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS sale_order_behavioral_partner_sale_idx "
            "ON sale_order (partner_id, date_order) WHERE state = 'sale'"))

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["customer_inactive"] = {
            "model": "res.partner",
            "goal": "order_placed",
            "settings": ["inactive_days", "inactive_median_factor", "inactive_min_days"],
        }
        return kinds

    @api.model
    def _detect_customer_inactive(self, now):
        # (days, factor, floor) -> the longest entry window that needs it
        settings = self._get_detection_windows(
            "customer_inactive", lambda sequence: [sequence._get_inactive_settings()])
        if not settings:
            return []
        # the last orders some setting can lapse now
        shortest = min(min(days, floor) if factor else days for days, factor, floor in settings)
        longest = max(days for days, _factor, _floor in settings)
        newest = now - timedelta(days=shortest)
        oldest = now - timedelta(days=longest, hours=max(settings.values()))
        values = SQL(", ").join(
            SQL("(%s::int, %s::float8, %s::int, %s::int)", days, factor, floor, window)
            for (days, factor, floor), window in settings.items())
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """
            WITH settings(days, factor, floor_days, window_hours) AS (VALUES %(values)s),
            last_orders AS (
                SELECT DISTINCT ON (so.partner_id)
                       so.partner_id, so.id AS order_id, so.name, so.date_order, so.company_id
                  FROM sale_order so
                 WHERE so.state = 'sale'
                   AND so.date_order > %(oldest)s AND so.date_order <= %(newest)s
                   AND NOT EXISTS (
                       SELECT 1 FROM sale_order later
                        WHERE later.partner_id = so.partner_id
                          AND later.state = 'sale'
                          AND later.date_order > so.date_order)
                 ORDER BY so.partner_id, so.date_order DESC, so.id DESC
            ),
            gaps AS (
                SELECT history.partner_id,
                       percentile_cont(0.5) WITHIN GROUP (ORDER BY history.gap) AS median_gap
                  FROM (
                      SELECT so.partner_id,
                             (EXTRACT(EPOCH FROM so.date_order - lag(so.date_order)
                                 OVER (PARTITION BY so.partner_id ORDER BY so.date_order, so.id)
                             ) / 86400.0)::float8 AS gap
                        FROM sale_order so
                        JOIN last_orders lo ON lo.partner_id = so.partner_id
                       WHERE so.state = 'sale'
                  ) history
                 WHERE history.gap IS NOT NULL
                 GROUP BY history.partner_id
            ),
            lapses AS (
                SELECT lo.*, s.days, s.factor, s.floor_days, s.window_hours, gaps.median_gap,
                       lo.date_order + make_interval(secs => 86400.0 * CASE
                           WHEN s.factor > 0 AND gaps.median_gap IS NOT NULL
                           THEN LEAST(s.days, GREATEST(s.floor_days, s.factor * gaps.median_gap))
                           ELSE s.days END) AS lapsed_at
                  FROM last_orders lo
                 CROSS JOIN settings s
                  LEFT JOIN gaps ON gaps.partner_id = lo.partner_id
            )
            INSERT INTO behavioral_trigger
                (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                 dedupe_key, company_id, state, create_uid, create_date, write_uid, write_date)
            SELECT 'customer_inactive', lapse.partner_id, 'res.partner', lapse.partner_id, lapse.lapsed_at,
                   jsonb_build_object(
                       'days', lapse.days,
                       'factor', lapse.factor,
                       'floor_days', lapse.floor_days,
                       'last_order_id', lapse.order_id,
                       'last_order_name', lapse.name,
                       'last_order_date', lapse.date_order,
                       'median_gap_days', round(lapse.median_gap::numeric, 1)),
                   'customer_inactive:' || lapse.partner_id
                       || ':' || to_char(lapse.date_order, 'YYYYMMDDHH24MISS')
                       || ':' || lapse.days || ':' || lapse.factor || ':' || lapse.floor_days,
                   lapse.company_id, %(common)s
              FROM lapses lapse
              JOIN res_partner partner ON partner.id = lapse.partner_id
             WHERE lapse.lapsed_at <= %(now)s
               AND lapse.lapsed_at > %(now)s - make_interval(hours => lapse.window_hours)
               AND partner.active
               AND COALESCE(partner.email, '') != ''
               AND partner.id NOT IN %(public)s
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id
            """,
            values=values, oldest=oldest, newest=newest, now=now,
            common=self._prepare_detected_values(),
            public=tuple(self._get_public_partner_ids()) or (0,),
        ))
        return [row[0] for row in self.env.cr.fetchall()]

    def _filter_customer_inactive(self, sequence, refuse):
        """A lapse measured with another sequence's setting is not this
        sequence's business (no note)."""
        days, factor, floor = sequence._get_inactive_settings()
        return self.filtered(lambda t: (
            (t.payload or {}).get("days"), (t.payload or {}).get("factor"), (t.payload or {}).get("floor_days"),
        ) == (days, factor, floor))


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    inactive_days = fields.Integer(
        "Inactive For (days)", default=90,
        help="The sequence starts when a customer who ordered before has not ordered for this many days.")
    inactive_median_factor = fields.Float(
        "Or Times Their Usual Gap", digits=(16, 2),
        help="Start earlier for regular buyers: when a customer with at least two orders has not "
             "ordered for this many times their median gap between orders (e.g. 3). "
             "Leave at 0 to use the number of days only.")
    inactive_min_days = fields.Integer(
        "But Not Before (days)", default=30,
        help="With a gap factor: never consider a customer inactive sooner than this.")

    @api.constrains("inactive_days", "inactive_median_factor", "inactive_min_days")
    def _check_inactive_settings(self):
        for sequence in self:
            if sequence.inactive_days < 1 or sequence.inactive_min_days < 0 or sequence.inactive_median_factor < 0:
                raise ValidationError(self.env._(
                    "Sequence %(name)s: the inactivity period must be at least one day, "
                    "and the gap factor and floor cannot be negative.", name=sequence.name))

    def _get_inactive_settings(self):
        """(days, gap factor, floor in days) as detection keys them."""
        self.ensure_one()
        factor = round(self.inactive_median_factor or 0.0, 2)
        return (self.inactive_days, factor, self.inactive_min_days if factor else 0)
