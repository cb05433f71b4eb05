from odoo import api, fields, models
from odoo.exceptions import ValidationError


class ResCompany(models.Model):
    """Cadence limits of the company's behavioral emails.

    They apply to every marketing sequence of the company and are edited in
    Settings > Behavioral Email. Quiet hours are read in the recipient's time
    zone; a step falling inside them, or beyond the cap, is postponed, never
    dropped.
    """

    _inherit = "res.company"

    behavioral_quiet_start = fields.Float(
        "Quiet Hours From", default=0.0,
        help="No behavioral email is sent from this hour (in the recipient's time zone) "
             "until the end of the quiet hours. Equal start and end: no quiet hours. "
             "The settings suggest 21:00–08:00.")
    behavioral_quiet_end = fields.Float(
        "Quiet Hours To", default=0.0,
        help="Sending resumes at this hour (in the recipient's time zone). "
             "Equal start and end: no quiet hours. The settings suggest 21:00–08:00.")
    behavioral_cap_count = fields.Integer(
        "Frequency Cap", default=2,
        help="At most this many marketing emails, across all sequences, per customer "
             "within the cap period. 0: no cap.")
    behavioral_cap_hours = fields.Integer(
        "Cap Period (hours)", default=24,
        help="The sliding window, in hours, over which the frequency cap counts emails.")

    @api.constrains("behavioral_quiet_start", "behavioral_quiet_end")
    def _check_behavioral_quiet_hours(self):
        for company in self:
            for hour in (company.behavioral_quiet_start, company.behavioral_quiet_end):
                if not 0.0 <= hour < 24.0:
                    raise ValidationError(self.env._(
                        "Quiet hours of %(company)s must be between 00:00 and 23:59.",
                        company=company.name))

    @api.constrains("behavioral_cap_count", "behavioral_cap_hours")
    def _check_behavioral_cap(self):
        for company in self:
            if company.behavioral_cap_count < 0:
                raise ValidationError(self.env._(
                    "The frequency cap of %(company)s cannot be negative (0 means no cap).",
                    company=company.name))
            if company.behavioral_cap_hours < 1:
                raise ValidationError(self.env._(
                    "The cap period of %(company)s must be at least one hour.",
                    company=company.name))
