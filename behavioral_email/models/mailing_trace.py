import logging
from contextlib import contextmanager

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
        if traces:
            with traces._behavioral_capturing():
                self.env["behavioral.trigger"].sudo()._capture_email_opened(traces.sudo())
        return traces

    def set_clicked(self, domain=None):
        traces = super().set_clicked(domain=domain)
        if traces:
            with traces._behavioral_capturing():
                self.env["behavioral.trigger"].sudo()._capture_email_clicked(traces.sudo())
        return traces

    @contextmanager
    def _behavioral_capturing(self):
        """Run the capture of these traces' opens or clicks; never raising:
        the tracking pixel and the link redirection must always work."""
        # written by the tracking call itself: flushed out of the savepoint,
        # so that a failing capture cannot take the open or click with it
        self.env.flush_all()
        try:
            with self.env.cr.savepoint(flush=False):
                yield
        except Exception:  # noqa: BLE001 - capture must never break the tracking
            _logger.exception("behavioral_email: could not capture the engagement of traces %s", self.ids)
