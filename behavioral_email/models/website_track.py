from odoo import models
from odoo.tools import SQL


class WebsiteTrack(models.Model):
    _inherit = "website.track"

    def init(self):
        # Detection of product and page views reads the recent visits only:
        # keep it independent from the size of the visit history.
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS website_track_behavioral_visit_datetime_idx "
            "ON website_track (visit_datetime)"))
