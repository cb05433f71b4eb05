from odoo import api, fields, models
from odoo.tools import SQL, float_compare


class BehavioralTrigger(models.Model):
    """``back_in_stock``: a product a customer wanted can be bought again.

    website_sale_stock stops selling a storable product that does not allow
    out-of-stock orders once its free quantity in the website's warehouse is
    0 (``website._get_product_available_qty``). Captured by
    ``stock.move._action_done`` (a receipt, an inventory adjustment, a
    return validated): the free quantities of such products before and after
    the moves, per website; those that went from none to some are back in
    stock, and every interested customer (see ``product_alert.py``) gets a
    trigger, one per (customer, product, restock). Besides views, carts and
    wishlists, a request made with the product page's *Notify me* button
    counts: once a sequence enrolls the customer, the request is handed over
    to the sequence and website_sale_stock's own availability email
    (``product.product._send_availability_email``) is not sent for it, so
    that nobody is told twice.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("back_in_stock", "Back in stock")], ondelete={"back_in_stock": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["back_in_stock"] = {
            "model": "product.product",
            "goal": "order_product",
            "settings": ["website_id", "alert_lookback_days"],
        }
        return kinds

    @api.model
    def _get_product_interest_sql(self, kind, since, now):
        selects = super()._get_product_interest_sql(kind, since, now)
        if kind == "back_in_stock":
            # asked to be told (website_sale_stock's Notify me; undated)
            selects.append(SQL(
                """SELECT change.product_id, rel.res_partner_id, NULL::int, 'notify', NULL::timestamp
                     FROM change
                     JOIN stock_notification_product_partner_rel rel
                       ON rel.product_product_id = change.product_id"""))
        return selects

    @api.model
    def _get_restock_watch(self, moves):
        """What to compare after ``moves`` are done: the products they may
        bring back in stock (storable, not sold when out of stock, into an
        internal location) and their free quantities now, per website.

        :return tuple: (products, {website id: {product id: free quantity}}),
            or None when nothing needs watching (no running sequence)
        """
        products = moves.filtered(lambda m: m.location_dest_id.usage == "internal").product_id.filtered(
            lambda p: p.is_storable and not p.allow_out_of_stock_order)
        if not products or not self._get_alert_sequences("back_in_stock"):
            return None
        return products, self._get_website_free_qty(products)

    @api.model
    def _get_website_free_qty(self, products):
        """{website id: {product id: free quantity}}: what each website may
        sell, as website_sale_stock counts it (free quantity in the
        website's warehouse, or in all of its company's). One computation
        per distinct warehouse, whatever the number of products."""
        by_place = {}
        result = {}
        for website in self.env["website"].sudo().search([]):  # pylint: disable=no-search-all
            place = (website.company_id.id, website.warehouse_id.id)
            if place not in by_place:
                quantities = products.sudo().with_context(
                    allowed_company_ids=[place[0]], warehouse_id=place[1],
                )._compute_quantities_dict(None, None, None)
                by_place[place] = {product_id: qty["free_qty"] for product_id, qty in quantities.items()}
            result[website.id] = by_place[place]
        return result

    @api.model
    def _capture_back_in_stock(self, moves, watch):
        """Record a trigger for every customer interested in a product these
        done moves brought back in stock.

        :param watch: what :meth:`_get_restock_watch` returned before the moves
        """
        products, before = watch
        after = self._get_website_free_qty(products)
        changes = []
        for product in products:
            rounding = product.uom_id.rounding
            websites = [
                website_id for website_id, quantities in after.items()
                if float_compare(before[website_id].get(product.id, 0.0), 0.0, precision_rounding=rounding) <= 0
                < float_compare(quantities.get(product.id, 0.0), 0.0, precision_rounding=rounding)
            ]
            move_ids = moves.filtered(lambda m, p=product: m.product_id == p).ids
            if not websites or not move_ids:
                continue
            move = max(move_ids)
            changes.append({
                "product_id": product.id,
                "key": str(move),
                "website_ids": websites,
                "payload": {
                    "move_id": move,
                    "free_qty": max(after[website_id].get(product.id, 0.0) for website_id in websites),
                },
            })
        if not changes:
            return []
        sequences = self._get_alert_sequences("back_in_stock")
        return self._insert_product_alert_triggers(
            "back_in_stock", changes, max(sequences.mapped("alert_lookback_days") or [1]))

    @api.model
    def _hand_over_stock_notifications(self, trigger_ids):
        """The Notify me requests these triggers answer are now the
        sequence's: website_sale_stock's hourly email skips them. Called once
        a sequence took the triggers (an enrollment, even one refused for
        consent); a request no sequence takes keeps Odoo's email."""
        if not trigger_ids:
            return
        self.env.cr.execute(SQL(
            """DELETE FROM stock_notification_product_partner_rel rel
                USING behavioral_trigger t
                WHERE t.id IN %s
                  AND t.payload -> 'interest' ? 'notify'
                  AND rel.product_product_id = t.res_id
                  AND rel.res_partner_id = t.partner_id""",
            tuple(trigger_ids)))
        self.env["product.product"].invalidate_model(["stock_notification_partner_ids"])

    def _filter_back_in_stock(self, sequence, refuse):
        return self._filter_product_alert(sequence)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    def _create_enrollments(self, vals_list, notes):
        enrollments = super()._create_enrollments(vals_list, notes)
        if enrollments and self.trigger_type == "back_in_stock":
            self.env["behavioral.trigger"]._hand_over_stock_notifications(enrollments.trigger_id.ids)
        return enrollments
