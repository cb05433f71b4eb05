import logging

from odoo import models
from odoo.tools import SQL

_logger = logging.getLogger(__name__)


class MailingTrace(models.Model):
    _inherit = "mailing.trace"

    def set_bounced(self, domain=None, bounce_message=False):
        """A bounced sequence email ends its enrollment right away."""
        traces = super().set_bounced(domain=domain, bounce_message=bounce_message)
        ours = traces.filtered(lambda t: t.model == "behavioral.enrollment")
        if ours:
            enrollments = self.env["behavioral.enrollment"].sudo().browse(ours.mapped("res_id")).exists()
            enrollments.filtered(lambda e: e.state == "running")._end("exited", "bounced")
        return traces

    # ------------------------------------------------------------
    # ENGAGEMENT CAPTURE
    # ------------------------------------------------------------

    def init(self):
        super().init()
        # Unopened emails are detected by their send date: the index holds
        # the traces not opened yet only.
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS mailing_trace_behavioral_unopened_idx "
            "ON mailing_trace (sent_datetime) WHERE trace_status = 'sent'"))
        # Attribution looks up the opened or clicked emails of an address
        # when an order is confirmed (sale.order._behavioral_attribute).
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS mailing_trace_behavioral_touch_idx ON mailing_trace (email) "
            "WHERE open_datetime IS NOT NULL OR links_click_datetime IS NOT NULL"))

    def set_opened(self, domain=None):
        traces = super().set_opened(domain=domain)
        traces._behavioral_capture("email_opened")
        return traces

    def set_clicked(self, domain=None):
        traces = super().set_clicked(domain=domain)
        traces._behavioral_capture("email_clicked")
        return traces

    def _behavioral_capture(self, kind):
        """Record the opens or clicks of these traces as triggers; never
        raising: the tracking pixel and the link redirection must always work."""
        if not self:
            return
        # written by the tracking call itself: flushed out of the savepoint,
        # so that a failing capture cannot take the open or click with it
        self.env.flush_all()
        try:
            with self.env.cr.savepoint(flush=False):
                getattr(self.env["behavioral.trigger"].sudo(), f"_capture_{kind}")(self.sudo())
        except Exception:  # noqa: BLE001 - capture must never break the tracking
            _logger.exception("behavioral_email: could not capture %s of traces %s", kind, self.ids)
