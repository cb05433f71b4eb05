import logging

from odoo import api, models
from odoo.tools import SQL

_logger = logging.getLogger(__name__)


class MailingSubscription(models.Model):
    _inherit = "mailing.subscription"

    @api.model_create_multi
    def create(self, vals_list):
        subscriptions = super().create(vals_list)
        subscriptions._behavioral_capture_subscribed()
        return subscriptions

    def write(self, vals):
        # switched back from opted out: a new subscription
        resubscribed = self.filtered("opt_out") if "opt_out" in vals and not vals["opt_out"] else self.browse()
        res = super().write(vals)
        resubscribed._behavioral_capture_subscribed()
        return res

    def _behavioral_capture_subscribed(self):
        """Record these subscriptions (those opted in); never raising.

        Imports (the contact import wizard, the generic import) are not
        people subscribing now and are left alone.
        """
        context = self.env.context
        if not self or context.get("behavioral_no_capture") or context.get("import_file"):
            return
        try:
            with self.env.cr.savepoint(flush=False):
                self.env["behavioral.trigger"].sudo()._capture_newsletter_subscribed(self.sudo())
        except Exception:  # noqa: BLE001 - capture must never break the subscription
            _logger.exception("behavioral_email: could not capture subscriptions %s", self.ids)

    @api.model
    def _behavioral_get_ids(self, column, record_ids):
        """Ids of the subscriptions whose ``column`` (contact_id or list_id)
        is in ``record_ids``: list_ids / contact_ids commands write the
        relation table directly, so new rows are found by comparing these."""
        if not record_ids:
            return set()
        self.env.flush_all()
        self.env.cr.execute(SQL(
            "SELECT id FROM mailing_subscription WHERE %s IN %s", SQL.identifier(column), tuple(record_ids)))
        return {row[0] for row in self.env.cr.fetchall()}

    @api.model
    def _behavioral_capture_linked(self, column, record_ids, before):
        """Capture the subscriptions of ``record_ids`` not in ``before``."""
        if self.env.context.get("behavioral_no_capture") or self.env.context.get("import_file"):
            return
        new_ids = self._behavioral_get_ids(column, record_ids) - before
        self.browse(sorted(new_ids))._behavioral_capture_subscribed()
