from odoo import api, fields, models
from odoo.tools import SQL

from .email_engagement import ENGAGEMENT_SETTINGS


class BehavioralTrigger(models.Model):
    """``email_clicked``: a customer clicked a tracked link of a marketing email.

    Captured by ``mailing.trace.set_clicked`` (the link tracker's
    ``/r/<code>/m/<trace id>`` route), one trigger per email: the key is the
    mailing trace, so the first click counts. The payload holds the address
    of the link clicked (``url``). Recorded only while a sequence of this kind
    runs. Settings, customer and the rule against a sequence feeding on its
    own emails: ``email_engagement.py``.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("email_clicked", "Email link clicked")], ondelete={"email_clicked": "cascade"})

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["email_clicked"] = {"model": "mailing.trace", "goal": "order_placed", "settings": ENGAGEMENT_SETTINGS}
        return kinds

    @api.model
    def _capture_email_clicked(self, traces):
        return self._capture_email_engagement("email_clicked", traces, payload=SQL(
            """'url', (SELECT link.url FROM link_tracker_click click
                         JOIN link_tracker link ON link.id = click.link_id
                        WHERE click.mailing_trace_id = mt.id
                        ORDER BY click.id DESC LIMIT 1)"""))

    def _filter_email_clicked(self, sequence, refuse):
        return self._filter_email_engagement(sequence, refuse)
