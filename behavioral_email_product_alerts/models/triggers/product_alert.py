from datetime import timedelta

from psycopg2.extras import Json

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from odoo.addons.behavioral_email.tools.visits import customer_to_email

# the kinds that share this file's interest query, settings and enrollment rules
ALERT_KINDS = ("back_in_stock", "price_drop")
# signs of interest that stand until the customer takes them back, whatever their age
STANDING_INTEREST = ("wishlisted", "notify")


class BehavioralTrigger(models.Model):
    """What the product alert kinds (``back_in_stock``, ``price_drop``) share:
    the customers interested in a product, and one trigger for each of them
    when something happens to that product.

    A customer is interested in a product when they viewed it (website_sale's
    ``website.track`` rows of their visitor) or have it in an open website
    cart changed within the look-back window, or have it on their wishlist
    (``product.wishlist``, whenever they added it); a kind may add its own
    signs (:meth:`_get_product_interest_sql`). Visitors without a contact,
    the websites' public users, internal users, contacts without an email
    and customers who ordered the product since they first showed interest
    are left out.

    One set-based ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` per
    capture, whatever the number of customers: one trigger per (customer,
    product, change). The source document is the product
    (``product.product``); the payload names it in ``product_ids`` (for the
    goal *order_product*), lists the signs of interest (``interest``), the
    latest windowed one (``interest_at``) and the website it was shown on.
    """

    _inherit = "behavioral.trigger"

    @api.model
    def _get_alert_sequences(self, kind):
        """The running sequences of ``kind``: nothing is captured without one."""
        return self.env["behavioral.sequence"].sudo().search([
            ("state", "=", "running"), ("trigger_type", "=", kind),
        ])

    @api.model
    def _get_product_interest_sql(self, kind, since, now):
        """The signs of interest in the changed products, as SQL selects of
        (product_id, partner_id, website_id, how, at) reading the ``change``
        rows (``product_id``); ``at`` is NULL when the sign has no date.
        Extend with ``super()`` to add a kind's own.

        :param datetime since: views and carts older than this do not count
        """
        return [
            # products viewed lately by a known visitor
            SQL("""SELECT change.product_id, visitor.partner_id, visitor.website_id,
                          'viewed', max(track.visit_datetime)
                     FROM change
                     JOIN website_track track ON track.product_id = change.product_id
                     JOIN website_visitor visitor ON visitor.id = track.visitor_id
                    WHERE track.visit_datetime > %(since)s AND track.visit_datetime <= %(now)s
                      AND visitor.partner_id IS NOT NULL
                    GROUP BY change.product_id, visitor.partner_id, visitor.website_id""",
                since=since, now=now),
            # in an open website cart changed lately
            SQL("""SELECT change.product_id, so.partner_id, so.website_id,
                          'carted', max(COALESCE(so.behavioral_cart_activity, line.write_date))
                     FROM change
                     JOIN sale_order_line line ON line.product_id = change.product_id
                     JOIN sale_order so ON so.id = line.order_id
                    WHERE so.state = 'draft' AND so.website_id IS NOT NULL
                      AND COALESCE(so.behavioral_cart_activity, line.write_date) > %(since)s
                    GROUP BY change.product_id, so.partner_id, so.website_id""",
                since=since),
            # on a customer's wishlist (a guest's wishlist has no partner yet)
            SQL("""SELECT change.product_id, wish.partner_id, wish.website_id,
                          'wishlisted', max(wish.create_date)
                     FROM change
                     JOIN product_wishlist wish ON wish.product_id = change.product_id
                    WHERE wish.active AND wish.partner_id IS NOT NULL
                    GROUP BY change.product_id, wish.partner_id, wish.website_id"""),
        ]

    @api.model
    def _insert_product_alert_triggers(self, kind, changes, lookback_days):
        """Insert one ``kind`` trigger per customer interested in each changed
        product, in one statement.

        :param list changes: dicts with ``product_id``, ``key`` (what tells
            this change from the product's others, for the dedupe key),
            ``website_ids`` (the websites it happened on; None for all) and
            ``payload`` (what the kind records about the change)
        :param int lookback_days: how far back views and carts count
        :return list: ids of the inserted triggers
        """
        if not changes:
            return []
        now = fields.Datetime.now()
        since = now - timedelta(days=lookback_days)
        rows = SQL(", ").join(
            SQL("(%s::int, %s::int[], %s, %s::jsonb)",
                change["product_id"], change.get("website_ids"), change["key"], Json(change["payload"]))
            for change in changes
        )
        interest = SQL(" UNION ALL ").join(self._get_product_interest_sql(kind, since, now))
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """
            WITH change(product_id, website_ids, change_key, extra) AS (VALUES %(rows)s),
            interest(product_id, partner_id, website_id, how, at) AS (%(interest)s),
            interested AS (
                SELECT interest.product_id, interest.partner_id,
                       array_agg(DISTINCT interest.how ORDER BY interest.how) AS hows,
                       max(interest.at) FILTER (WHERE interest.how NOT IN %(standing)s) AS recent_at,
                       COALESCE(min(interest.at), %(since)s) AS first_at,
                       (array_agg(interest.website_id ORDER BY interest.at DESC NULLS LAST)
                            FILTER (WHERE interest.website_id IS NOT NULL))[1] AS website_id
                  FROM interest
                  JOIN change ON change.product_id = interest.product_id
                 WHERE change.website_ids IS NULL OR interest.website_id IS NULL
                    OR interest.website_id = ANY(change.website_ids)
                 GROUP BY interest.product_id, interest.partner_id
            )
            INSERT INTO behavioral_trigger
                (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                 dedupe_key, company_id, state, create_uid, create_date, write_uid, write_date)
            SELECT %(kind)s, interested.partner_id, 'product.product', interested.product_id, %(now)s,
                   change.extra || jsonb_build_object(
                       'product_ids', jsonb_build_array(interested.product_id),
                       'interest', to_jsonb(interested.hows),
                       'interest_at', interested.recent_at,
                       'website_id', interested.website_id,
                       'lookback_days', %(lookback)s),
                   %(kind)s || ':' || interested.product_id || ':' || change.change_key
                       || ':' || interested.partner_id,
                   COALESCE(website.company_id, template.company_id), %(common)s
              FROM interested
              JOIN change ON change.product_id = interested.product_id
              JOIN res_partner partner ON partner.id = interested.partner_id
              JOIN product_product product ON product.id = interested.product_id
              JOIN product_template template ON template.id = product.product_tmpl_id
              LEFT JOIN website ON website.id = interested.website_id
             WHERE %(customer)s
               AND product.active AND template.active AND template.sale_ok AND template.is_published
               AND NOT EXISTS (
                   -- ordered since they first showed interest: they have it
                   SELECT 1 FROM sale_order_line line
                     JOIN sale_order so ON so.id = line.order_id
                    WHERE so.partner_id = interested.partner_id
                      AND line.product_id = interested.product_id
                      AND so.state = 'sale' AND so.date_order >= interested.first_at)
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id
            """,
            rows=rows, interest=interest, standing=STANDING_INTEREST, since=since, now=now,
            kind=kind, lookback=lookback_days, common=self._prepare_detected_values(),
            customer=customer_to_email(SQL("interested.partner_id")),
        ))
        ids = [row[0] for row in self.env.cr.fetchall()]
        if ids:
            self._trigger_enroll_cron()
        return ids

    def _filter_product_alert(self, sequence):
        """The triggers whose interest is recent enough for ``sequence``'s
        look-back window: a wishlist entry or a request to be notified counts
        whatever its age; views and carts only within the window. Triggers
        captured for another sequence's longer window are not this
        sequence's business (no note: it is not a refusal)."""
        def recent(trigger):
            payload = trigger.payload or {}
            if set(payload.get("interest") or []) & set(STANDING_INTEREST):
                return True
            at = payload.get("interest_at")
            if not isinstance(at, str):
                return False
            since = trigger.occurred_at - timedelta(days=sequence.alert_lookback_days)
            return fields.Datetime.to_datetime(at[:19].replace("T", " ")) > since
        return self.filtered(recent)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    alert_lookback_days = fields.Integer(
        "Interest Window (days)", default=30,
        help="Customers count as interested in a product when they viewed it or had it in a "
             "cart within this many days before it came back in stock or its price fell. "
             "A product on their wishlist, or one they asked to be told about, counts "
             "whenever they added it.")

    @api.constrains("alert_lookback_days")
    def _check_alert_lookback_days(self):
        for sequence in self.filtered(lambda s: s.trigger_type in ALERT_KINDS):
            if sequence.alert_lookback_days < 1:
                raise ValidationError(self.env._(
                    "Sequence %(name)s: the interest window must be at least one day.",
                    name=sequence.name))

    def _get_reentry_key(self, trigger):
        key = super()._get_reentry_key(trigger)
        if self.trigger_type in ALERT_KINDS and self.reentry == "document":
            # the source document, the product, is shared by every interested
            # customer: once per product and customer
            key = f"{key}:{trigger.partner_id.id}"
        return key
