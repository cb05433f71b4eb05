from odoo import api, models


class LinkTrackerClick(models.Model):
    _inherit = "link.tracker.click"

    @api.model
    def add_click(self, code, **route_values):
        # the open and the click this records on an email's trace know which
        # link was clicked: a link of another mailing, which Odoo's
        # /r/<code>/m/<trace id> route accepts with any trace, is no engagement
        # with that email (behavioral.trigger._sql_engagement_from_own_link)
        return super(LinkTrackerClick, self.with_context(behavioral_click_code=code)).add_click(
            code, **route_values)
