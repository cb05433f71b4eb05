from odoo import api, models


class LinkTrackerClick(models.Model):
    _inherit = "link.tracker.click"

    @api.model
    def _prepare_click_values_from_route(self, **route_values):
        """A click through a link of one mailing is no click on an email of
        another.

        Odoo's ``/r/<code>/m/<trace id>`` route takes any link's code with any
        trace id, and trace ids are sequential: whoever holds one tracked link
        could mark another customer's email opened and clicked, start a
        sequence for that customer (email_opened, email_clicked), take a
        branch or be credited with an order. Such a click still counts for its
        link and still redirects; it is only no longer attached to that trace,
        so the trace is neither opened nor clicked by it.
        """
        values = super()._prepare_click_values_from_route(**route_values)
        if values.get("mailing_trace_id") and values.get("link_id"):
            link = self.env["link.tracker"].sudo().browse(values["link_id"])
            trace = self.env["mailing.trace"].sudo().browse(values["mailing_trace_id"])
            if link.mass_mailing_id and link.mass_mailing_id != trace.mass_mailing_id:
                values.update(
                    mailing_trace_id=False,
                    mass_mailing_id=link.mass_mailing_id.id,
                    campaign_id=link.campaign_id.id,
                )
        return values
