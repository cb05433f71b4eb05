import logging
from collections import defaultdict
from datetime import timedelta

from odoo import api, fields, models
from odoo.tools import SQL

_logger = logging.getLogger(__name__)

# products kept per source product (or category) in the cache
DEFAULT_PER_PRODUCT = 12
# orders with more product lines than this are left out of "bought together":
# a wholesale order pairs everything with everything and says little
MAX_ORDER_LINES = 30
DEFAULT_HISTORY_DAYS = 365


class BehavioralProductAffinity(models.Model):
    """Which products go with which, computed from the shop's confirmed
    orders: the cache behind the recommendations of the sequences' emails.

    Kinds (``kind``), all rewritten by :meth:`_cron_refresh`:

    * ``bought_together``: ``recommended_product_id`` was in ``score``
      confirmed orders together with ``product_id`` ("customers also bought").
    * ``category``: ``recommended_product_id`` is among the best sellers of
      ``categ_id`` (``score`` confirmed orders).
    * ``best_seller``: the shop's best sellers, for customers the shop knows
      nothing about yet.

    Reading it costs one query per batch of emails whatever the size of the
    order history; :meth:`_get_recommendations` adds the merchandiser's own
    choices (accessory and alternative products of website_sale) and swaps
    the products that cannot be bought at send time.
    """

    _name = "behavioral.product.affinity"
    _description = "Behavioral Email Product Affinity"
    _order = "kind, product_id, categ_id, score desc, id"
    _log_access = False

    kind = fields.Selection(
        [("bought_together", "Bought together"), ("category", "Category best seller"),
         ("best_seller", "Best seller")],
        required=True, index=True, readonly=True)
    product_id = fields.Many2one("product.product", ondelete="cascade", index="btree_not_null", readonly=True)
    categ_id = fields.Many2one("product.category", ondelete="cascade", index="btree_not_null", readonly=True)
    recommended_product_id = fields.Many2one("product.product", required=True, ondelete="cascade", readonly=True)
    score = fields.Integer(readonly=True, help="Number of confirmed orders behind this pairing.")

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _cron_refresh(self):
        """Rebuild the cache from the confirmed orders of the last
        ``behavioral_email.affinity_history_days`` days, in three set-based
        statements. Readers see the old rows until the transaction commits."""
        params = self.env["ir.config_parameter"].sudo()
        days = int(params.get_param("behavioral_email.affinity_history_days", DEFAULT_HISTORY_DAYS)) \
            or DEFAULT_HISTORY_DAYS
        keep = int(params.get_param("behavioral_email.affinity_per_product", DEFAULT_PER_PRODUCT)) \
            or DEFAULT_PER_PRODUCT
        since = fields.Datetime.now() - timedelta(days=days)
        self.env.flush_all()
        cr = self.env.cr
        cr.execute(SQL("DELETE FROM behavioral_product_affinity"))
        sold = SQL(
            """SELECT DISTINCT line.order_id, line.product_id
                 FROM sale_order_line line
                 JOIN sale_order so ON so.id = line.order_id
                WHERE so.state = 'sale' AND so.date_order >= %(since)s
                  AND line.product_id IS NOT NULL AND line.display_type IS NULL
                  AND line.is_delivery IS NOT TRUE""", since=since)
        cr.execute(SQL(
            """WITH sold AS (%(sold)s),
                    small_orders AS (
                        SELECT order_id FROM sold GROUP BY order_id
                        HAVING count(*) BETWEEN 2 AND %(max_lines)s),
                    pairs AS (
                        SELECT a.product_id, b.product_id AS recommended_product_id, count(*) AS score
                          FROM sold a
                          JOIN small_orders o ON o.order_id = a.order_id
                          JOIN sold b ON b.order_id = a.order_id AND b.product_id != a.product_id
                         GROUP BY a.product_id, b.product_id),
                    ranked AS (
                        SELECT *, row_number() OVER (
                                   PARTITION BY product_id ORDER BY score DESC, recommended_product_id) AS rank
                          FROM pairs)
               INSERT INTO behavioral_product_affinity (kind, product_id, recommended_product_id, score)
               SELECT 'bought_together', product_id, recommended_product_id, score
                 FROM ranked WHERE rank <= %(keep)s""",
            sold=sold, max_lines=MAX_ORDER_LINES, keep=keep))
        cr.execute(SQL(
            """WITH sold AS (%(sold)s),
                    sales AS (
                        SELECT tmpl.categ_id, sold.product_id, count(*) AS score
                          FROM sold
                          JOIN product_product product ON product.id = sold.product_id
                          JOIN product_template tmpl ON tmpl.id = product.product_tmpl_id
                         GROUP BY tmpl.categ_id, sold.product_id),
                    ranked AS (
                        SELECT *, row_number() OVER (PARTITION BY categ_id ORDER BY score DESC, product_id) AS rank
                          FROM sales)
               INSERT INTO behavioral_product_affinity (kind, categ_id, recommended_product_id, score)
               SELECT 'category', categ_id, product_id, score FROM ranked WHERE rank <= %(keep)s""",
            sold=sold, keep=keep))
        cr.execute(SQL(
            """WITH sold AS (%(sold)s)
               INSERT INTO behavioral_product_affinity (kind, recommended_product_id, score)
               SELECT 'best_seller', product_id, count(*) FROM sold
                GROUP BY product_id ORDER BY count(*) DESC, product_id LIMIT %(keep)s""",
            sold=sold, keep=keep * 2))
        self.invalidate_model()
        _logger.info("behavioral_email: product affinities refreshed from orders since %s", since)

    # ------------------------------------------------------------
    # RECOMMENDATIONS
    # ------------------------------------------------------------

    @api.model
    def _get_recommendations(self, enrollments, size):
        """Products to recommend to each of ``enrollments``, best first.

        Seeds are what the customer has in the cart or order of the
        enrollment, the products its trigger names (``payload['product_ids']``,
        e.g. viewed products) and, when there is none, the customer's past
        purchases. For each customer, in this order: accessories of the
        seeds, products bought together with them, alternatives of the
        seeds, best sellers of the seeds' categories, the shop's best sellers.
        Seeds themselves are never recommended; products that cannot be
        bought now (archived, unpublished, not for sale, another website or
        company, out of stock where stock is tracked) are swapped for the
        next ones.

        A fixed number of queries for the whole batch, whatever its size.
        Works on new (unsaved) enrollments too, for previews.

        :return dict: {enrollment: product.product recordset of at most ``size``}
        """
        Product = self.env["product.product"].sudo()
        seeds = self._get_seed_products(enrollments)
        seed_products = Product.browse({pid for ids in seeds.values() for pid in ids})
        templates = seed_products.product_tmpl_id
        # the merchandiser's choices, read for all seeds at once
        accessories = {tmpl.id: tmpl.accessory_product_ids.ids for tmpl in templates}
        alternatives = {tmpl.id: tmpl.alternative_product_ids.product_variant_id.ids for tmpl in templates}
        # bought together and best sellers: one query
        categories = set(templates.categ_id.ids)
        self.flush_model()
        self.env.cr.execute(SQL(
            """SELECT kind, product_id, categ_id, recommended_product_id, score
                 FROM behavioral_product_affinity
                WHERE (kind = 'bought_together' AND product_id = ANY(%s))
                   OR (kind = 'category' AND categ_id = ANY(%s))
                   OR kind = 'best_seller'
                ORDER BY score DESC, recommended_product_id""",
            list(seed_products.ids), list(categories)))
        together = defaultdict(list)
        by_category = defaultdict(list)
        best_sellers = []
        for kind, product_id, categ_id, recommended_id, score in self.env.cr.fetchall():
            if kind == "bought_together":
                together[product_id].append((recommended_id, score))
            elif kind == "category":
                by_category[categ_id].append(recommended_id)
            else:
                best_sellers.append(recommended_id)

        candidates = {}
        for enrollment in enrollments:
            seed_ids = seeds[enrollment]
            products = Product.browse(seed_ids)
            ranked = []
            for tmpl in products.product_tmpl_id:
                ranked += accessories.get(tmpl.id, [])
            scores = defaultdict(int)
            for seed_id in seed_ids:
                for recommended_id, score in together.get(seed_id, []):
                    scores[recommended_id] += score
            ranked += sorted(scores, key=lambda pid: (-scores[pid], pid))
            for tmpl in products.product_tmpl_id:
                ranked += alternatives.get(tmpl.id, [])
            for categ in products.product_tmpl_id.categ_id:
                ranked += by_category.get(categ.id, [])
            ranked += best_sellers
            excluded = set(seed_ids)
            candidates[enrollment] = [pid for pid in dict.fromkeys(ranked) if pid not in excluded]

        available = self._filter_available(
            enrollments, Product.browse({pid for ids in candidates.values() for pid in ids}))
        return {
            enrollment: Product.browse(
                [pid for pid in candidates[enrollment] if pid in available.get(enrollment, ())][:size]
            ).with_env(self.env)
            for enrollment in enrollments
        }

    @api.model
    def _get_seed_products(self, enrollments):
        """{enrollment: [product ids]} the recommendations start from."""
        seeds = {}
        for enrollment in enrollments:
            lines = enrollment.order_id.sudo().order_line.filtered(
                lambda line: line.product_id and not line.display_type and not line.is_delivery)
            payload = enrollment.payload if isinstance(enrollment.payload, dict) else {}
            named = payload.get("product_ids") or ([payload["product_id"]] if payload.get("product_id") else [])
            seeds[enrollment] = list(dict.fromkeys(
                lines.product_id.ids + [pid for pid in named if isinstance(pid, int)]))
        # customers with nothing in hand: what they bought before
        without = [e for e, ids in seeds.items() if not ids and e.partner_id]
        if without:
            partners = {e.partner_id.commercial_partner_id.id for e in without}
            history = self._get_purchased_products(partners)
            for enrollment in without:
                seeds[enrollment] = history.get(enrollment.partner_id.commercial_partner_id.id, [])
        return seeds

    @api.model
    def _get_purchased_products(self, partner_ids, limit=10):
        """{commercial partner id: [product ids]}, the last products each bought."""
        if not partner_ids:
            return {}
        self.env["sale.order.line"].flush_model(["order_id", "product_id", "display_type"])
        self.env["sale.order"].flush_model(["state", "partner_id", "date_order"])
        self.env.cr.execute(SQL(
            """SELECT partner_id, array_agg(product_id ORDER BY last_order DESC)
                 FROM (SELECT partner.commercial_partner_id AS partner_id, line.product_id,
                              max(so.date_order) AS last_order,
                              row_number() OVER (PARTITION BY partner.commercial_partner_id
                                                 ORDER BY max(so.date_order) DESC) AS rank
                         FROM sale_order so
                         JOIN res_partner partner ON partner.id = so.partner_id
                         JOIN sale_order_line line ON line.order_id = so.id
                        WHERE so.state = 'sale' AND partner.commercial_partner_id = ANY(%s)
                          AND line.product_id IS NOT NULL AND line.display_type IS NULL
                          AND line.is_delivery IS NOT TRUE
                        GROUP BY partner.commercial_partner_id, line.product_id) bought
                WHERE rank <= %s
                GROUP BY partner_id""",
            list(partner_ids), limit))
        return dict(self.env.cr.fetchall())

    @api.model
    def _filter_available(self, enrollments, products):
        """{enrollment: set of product ids} of ``products`` the customer of
        each enrollment can buy now on the enrollment's website."""
        products = products.sudo().with_context(active_test=False)
        buyable = products.filtered(
            lambda p: p.active and p.product_tmpl_id.active and p.sale_ok and p.product_tmpl_id.is_published)
        buyable -= self._get_out_of_stock(buyable)
        result = {}
        for enrollment in enrollments:
            website = enrollment.order_id.website_id or enrollment.sequence_id.website_id
            company = enrollment.company_id
            result[enrollment] = {
                product.id for product in buyable
                if (not product.website_id or not website or product.website_id == website)
                and (not product.company_id or not company or product.company_id == company)
            }
        return result

    @api.model
    def _get_out_of_stock(self, products):
        """The products that are sold out, where stock is tracked (stock
        installed, storable products). Even a shop that keeps selling them
        (website_sale_stock's "continue selling") would rather not promote
        what it cannot ship now."""
        if "is_storable" not in self.env["product.template"]._fields:
            return products.browse()
        return products.filtered(lambda p: p.is_storable and p.free_qty <= 0)
