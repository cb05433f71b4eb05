from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from ...tools.visits import LAST_VISITOR, known_visits, visiting_customers


class BehavioralTrigger(models.Model):
    """``product_viewed``: browse abandonment.

    A known customer viewed products in the shop, stopped browsing, and has
    neither put those products in a cart nor ordered them since.

    Product views are website_sale's own records: the product page reports
    each view through ``/shop/products/recently_viewed_update``, which writes
    a ``website.track`` row with ``product_id`` (at most one per product and
    visitor every 30 minutes). Views made anonymously count once the visitor
    logs in: Odoo then moves them to the customer's visitor
    (``website.visitor._merge_visitor``). Visitors without a contact, the
    websites' public users and internal users are never customers here.

    Detected in bulk, one INSERT per distinct (idle delay, look-back window,
    minimum views) of the running sequences, reading only the views recent
    enough to matter. One trigger per idle spell: the key holds the
    customer's last view. The source document is the customer's
    ``website.visitor``; the payload lists the viewed products, most recent
    first, and ``goal_since``, the first of those views.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("product_viewed", "Products viewed, not bought")],
        ondelete={"product_viewed": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["product_viewed"] = {
            "model": "website.visitor",
            "goal": "order_product",
            "settings": ["website_id", "view_min_count", "view_lookback_hours", "view_idle_minutes"],
        }
        return kinds

    @api.model
    def _detect_product_viewed(self, now):
        # (idle minutes, look-back hours, minimum views) -> the longest entry window that needs it
        windows = self._get_detection_windows(
            "product_viewed", lambda sequence: [sequence._get_product_view_settings()])
        created = []
        self.env.flush_all()
        for (idle_minutes, lookback_hours, min_views), window_hours in windows.items():
            idle_limit = now - timedelta(minutes=idle_minutes)
            # a spell that ended before this is outside every entry window
            oldest = idle_limit - timedelta(hours=window_hours)
            self.env.cr.execute(SQL(
                """
                WITH recent AS (
                    -- product views of known visitors, recent enough to matter
                    %(recent)s
                ), spell AS (
                    -- customers idle since their last view, not for too long
                    SELECT partner_id, max(visit_datetime) AS last_view, %(last_visitor)s AS visitor_id
                      FROM recent
                     GROUP BY partner_id
                    HAVING max(visit_datetime) <= %(idle_limit)s AND max(visit_datetime) > %(oldest)s
                ), viewed AS (
                    -- each product viewed often enough within the look-back of the last view
                    SELECT spell.partner_id, spell.visitor_id, spell.last_view, recent.product_id,
                           count(*) AS views, min(recent.visit_datetime) AS first_view,
                           max(recent.visit_datetime) AS seen_last, max(recent.track_id) AS last_track
                      FROM spell
                      JOIN recent ON recent.partner_id = spell.partner_id
                     WHERE recent.visit_datetime > spell.last_view - make_interval(hours => %(lookback)s)
                     GROUP BY spell.partner_id, spell.visitor_id, spell.last_view, recent.product_id
                    HAVING count(*) >= %(min_views)s
                ), wanted AS (
                    -- still on sale, and neither put in a cart nor ordered since
                    SELECT viewed.*
                      FROM viewed
                      JOIN product_product pp ON pp.id = viewed.product_id AND pp.active
                      JOIN product_template pt ON pt.id = pp.product_tmpl_id
                       AND pt.active AND pt.sale_ok AND pt.is_published
                     WHERE NOT EXISTS (
                           SELECT 1 FROM sale_order_line line
                             JOIN sale_order so ON so.id = line.order_id
                            WHERE so.partner_id = viewed.partner_id
                              AND line.product_id = viewed.product_id
                              AND ((so.state = 'sale' AND so.date_order >= viewed.first_view)
                                   OR (so.state IN ('draft', 'sent') AND so.website_id IS NOT NULL
                                       AND line.write_date >= viewed.first_view)))
                )
                INSERT INTO behavioral_trigger
                    (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                     dedupe_key, company_id, state, create_uid, create_date, write_uid, write_date)
                SELECT 'product_viewed', wanted.partner_id, 'website.visitor', wanted.visitor_id,
                       wanted.last_view + make_interval(mins => %(idle)s),
                       jsonb_build_object(
                           'product_ids', jsonb_agg(wanted.product_id ORDER BY wanted.seen_last DESC, wanted.last_track DESC),
                           'view_count', sum(wanted.views),
                           'last_view', wanted.last_view,
                           'goal_since', min(wanted.first_view),
                           'website_id', visitor.website_id,
                           'idle_minutes', %(idle)s,
                           'lookback_hours', %(lookback)s,
                           'min_views', %(min_views)s),
                       'product_viewed:' || wanted.partner_id || ':'
                           || to_char(wanted.last_view, 'YYYYMMDDHH24MISSUS') || ':' || %(signature)s,
                       website.company_id, %(common)s
                %(customers)s
                 GROUP BY wanted.partner_id, wanted.visitor_id, wanted.last_view,
                          visitor.website_id, website.company_id
                ON CONFLICT (dedupe_key) DO NOTHING
                RETURNING id
                """,
                recent=known_visits(
                    SQL("track.product_id, track.id AS track_id"),
                    oldest - timedelta(hours=lookback_hours), now, SQL("track.product_id IS NOT NULL")),
                last_visitor=LAST_VISITOR, customers=visiting_customers("wanted"), idle_limit=idle_limit,
                oldest=oldest, lookback=lookback_hours, min_views=min_views, idle=idle_minutes,
                signature=f"{idle_minutes}-{lookback_hours}-{min_views}", common=self._prepare_detected_values(),
            ))
            created += [row[0] for row in self.env.cr.fetchall()]
        return created

    def _filter_product_viewed(self, sequence, refuse):
        """Views detected for another sequence's settings are not this
        sequence's business (no note: it is not a refusal)."""
        settings = sequence._get_product_view_settings()
        return self.filtered(lambda t: (
            (t.payload or {}).get("idle_minutes"),
            (t.payload or {}).get("lookback_hours"),
            (t.payload or {}).get("min_views"),
        ) == settings)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    view_min_count = fields.Integer(
        "Minimum Views", default=1,
        help="A product counts once the customer viewed it at least this many times within "
             "the look-back window. The shop records at most one view of a product every 30 minutes.")
    view_lookback_hours = fields.Integer(
        "Look-back Window (hours)", default=24,
        help="Views older than this, counted back from the customer's last view, are ignored.")
    view_idle_minutes = fields.Integer(
        "Idle Delay (minutes)", default=60,
        help="The customer counts as gone once no product was viewed for this long; "
             "the first step's delay is counted from then.")

    @api.constrains("view_min_count", "view_lookback_hours", "view_idle_minutes")
    def _check_product_view_settings(self):
        for sequence in self:
            if min(sequence.view_min_count, sequence.view_lookback_hours, sequence.view_idle_minutes) < 1:
                raise ValidationError(self.env._(
                    "Sequence %(name)s: the minimum views, look-back window and idle delay must be at least 1.",
                    name=sequence.name))

    def _get_product_view_settings(self):
        """(idle minutes, look-back hours, minimum views) of this sequence."""
        self.ensure_one()
        return (self.view_idle_minutes, self.view_lookback_hours, self.view_min_count)


class BehavioralEnrollment(models.Model):
    _inherit = "behavioral.enrollment"

    viewed_product_ids = fields.Many2many(
        "product.product", compute="_compute_viewed_product_ids",
        help="Products of the trigger still sold on the shop; for email templates, "
             "use _get_viewed_products() to have them most recent first.")

    @api.depends("payload")
    def _compute_viewed_product_ids(self):
        # computed for the whole batch being rendered: one query
        wanted = {enrollment.id: enrollment._get_payload_product_ids() for enrollment in self}
        all_ids = {product_id for ids in wanted.values() for product_id in ids}
        on_sale = set(self.env["product.product"].sudo().search([
            ("id", "in", list(all_ids)), ("sale_ok", "=", True), ("is_published", "=", True),
        ]).ids) if all_ids else set()
        for enrollment in self:
            enrollment.viewed_product_ids = [(6, 0, [pid for pid in wanted[enrollment.id] if pid in on_sale])]

    def _get_payload_product_ids(self):
        """Product ids of the payload, in payload order; anything else ignored."""
        self.ensure_one()
        ids = (self.payload or {}).get("product_ids")
        if not isinstance(ids, list):
            return []
        return [pid for pid in ids if isinstance(pid, int) and not isinstance(pid, bool)]

    def _get_viewed_products(self):
        """The viewed products still published and on sale, most recently
        viewed first (deleted, archived or unpublished ones are left out)."""
        self.ensure_one()
        rank = {pid: index for index, pid in enumerate(self._get_payload_product_ids())}
        return self.viewed_product_ids.sorted(lambda product: rank.get(product.id, len(rank)))
