from odoo import api, fields, models
from odoo.exceptions import ValidationError


class BehavioralTrigger(models.Model):
    """``price_drop``: a product a customer wanted costs less.

    Captured by ``product.template.write`` when the sales price
    (``list_price``) is lowered, in the product form, a list or an import:
    each variant's price (``lst_price``, the sales price plus the variant's
    extra) before and after, and the drop in percent. Drops of at least the
    smallest minimum of the running sequences give a trigger to every
    interested customer (see ``product_alert.py``), one per (customer,
    product, price change); each sequence then keeps the drops that reach
    its own minimum. The payload holds ``old_price``, ``new_price``,
    ``drop_percent`` and the ``currency``.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("price_drop", "Price drop")], ondelete={"price_drop": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["price_drop"] = {
            "model": "product.product",
            "goal": "order_product",
            "settings": ["website_id", "alert_lookback_days", "price_drop_min_percent"],
        }
        return kinds

    @api.model
    def _capture_price_drop(self, templates, old_prices):
        """Record a trigger for every customer interested in a variant of
        these templates whose price just fell far enough.

        :param dict old_prices: {template id: sales price before the change}
        """
        sequences = self._get_alert_sequences("price_drop")
        if not sequences:
            return []
        minimum = min(sequences.mapped("price_drop_min_percent"))
        stamp = fields.Datetime.now().strftime("%Y%m%d%H%M%S")
        changes = []
        for product in templates.product_variant_ids:
            template = product.product_tmpl_id
            currency = template.currency_id
            old = currency.round(old_prices[template.id] + product.price_extra)
            new = currency.round(product.lst_price)
            if old <= 0 or currency.compare_amounts(new, old) >= 0:
                continue
            percent = round((old - new) * 100.0 / old, 2)
            if percent < minimum:
                continue
            changes.append({
                "product_id": product.id,
                "key": f"{stamp}:{old}:{new}",
                "payload": {
                    "old_price": old,
                    "new_price": new,
                    "drop_percent": percent,
                    "currency": currency.name,
                },
            })
        return self._insert_product_alert_triggers(
            "price_drop", changes, max(sequences.mapped("alert_lookback_days")))

    def _filter_price_drop(self, sequence, refuse):
        """Drops below this sequence's minimum are not its business (no note:
        another sequence's lower minimum recorded them)."""
        return self._filter_product_alert(sequence).filtered(
            lambda t: ((t.payload or {}).get("drop_percent") or 0) >= sequence.price_drop_min_percent)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    price_drop_min_percent = fields.Float(
        "Minimum Price Drop (%)", default=10.0,
        help="Only a sales price lowered by at least this share of the old price starts the "
             "sequence, e.g. 10: from 50.00 to 45.00 or less.")

    @api.constrains("price_drop_min_percent")
    def _check_price_drop_min_percent(self):
        for sequence in self.filtered(lambda s: s.trigger_type == "price_drop"):
            if not 0 < sequence.price_drop_min_percent < 100:
                raise ValidationError(self.env._(
                    "Sequence %(name)s: the minimum price drop must be more than 0 and less than 100 %%.",
                    name=sequence.name))
