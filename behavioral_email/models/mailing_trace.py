from odoo import models


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
