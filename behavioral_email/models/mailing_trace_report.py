from odoo import models


class MailingTraceReport(models.Model):
    """Email Marketing's reporting counts the mailings sent from its app; the
    technical mailings of sequence steps are reported by the sequences."""

    _inherit = "mailing.trace.report"

    def _report_get_request_where_items(self):
        return super()._report_get_request_where_items() + ["mailing.use_in_behavioral IS NOT TRUE"]
