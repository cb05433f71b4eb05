from odoo import api, fields, models

from .email_engagement import ENGAGEMENT_SETTINGS


class BehavioralTrigger(models.Model):
    """``email_opened``: a customer opened a marketing email.

    Captured by ``mailing.trace.set_opened`` (the tracking pixel, a click, a
    reply), one trigger per email: the key is the mailing trace. Recorded
    only while a sequence of this kind runs. Settings, customer and the rule
    against a sequence feeding on its own emails: ``email_engagement.py``.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("email_opened", "Email opened")], ondelete={"email_opened": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["email_opened"] = {"model": "mailing.trace", "goal": "order_placed", "settings": ENGAGEMENT_SETTINGS}
        return kinds

    @api.model
    def _capture_email_opened(self, traces):
        return self._capture_email_engagement("email_opened", traces)

    def _filter_email_opened(self, sequence, refuse):
        return self._filter_email_engagement(sequence, refuse)
