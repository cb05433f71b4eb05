from odoo import api, fields, models
from odoo.exceptions import ValidationError

RETENTION_PARAM = "behavioral_email.trigger_retention_days"
BODY_RETENTION_PARAM = "behavioral_email.trace_body_retention_days"
DELIVERY_RETRY_PARAM = "behavioral_email.delivery_retry_hours"


class ResConfigSettings(models.TransientModel):
    """Settings > Behavioral Email: the batch sizes and limits the crons read
    (ir.config_parameter, database-wide) and the cadence limits of the
    current company (res.company)."""

    _inherit = "res.config.settings"

    behavioral_enroll_batch_size = fields.Integer(
        "Enrollment Batch Size", config_parameter="behavioral_email.enroll_batch_size", default=500,
        help="How many new triggers the enrollment cron evaluates per batch. Each batch is "
             "committed on its own, so a larger batch means fewer commits but longer locks.")
    behavioral_advance_batch_size = fields.Integer(
        "Sending Batch Size", config_parameter="behavioral_email.advance_batch_size", default=200,
        help="How many due enrollments the sending cron advances per batch (one rendering "
             "and one commit per batch).")
    behavioral_bounce_limit = fields.Integer(
        "Bounce Limit", config_parameter="behavioral_email.bounce_limit", default=1,
        help="A customer whose address bounced this many times gets no further marketing "
             "email from any sequence.")
    behavioral_trigger_retention_days = fields.Integer(
        "Keep Raw Triggers (days)", config_parameter=RETENTION_PARAM, default=180,
        help="Processed triggers (raw shop signals, personal data) are deleted after this many "
             "days; enrollments keep what they need. 0 keeps them forever.")
    behavioral_trace_body_retention_days = fields.Integer(
        "Keep Email Copies (days)", config_parameter=BODY_RETENTION_PARAM, default=90,
        help="The copy of each email sent, as the customer received it (personal data), is deleted "
             "after this many days; the email stays in the reports with its delivery, opens and "
             "clicks. 0 keeps the copies forever.")
    behavioral_delivery_retry_hours = fields.Integer(
        "Retry Undelivered Emails (hours)", config_parameter=DELIVERY_RETRY_PARAM, default=24,
        help="How long an email of a sequence is retried while the outgoing mail server is "
             "unreachable or answers with a temporary error. 0 does not retry.")
    behavioral_quiet_start = fields.Float(related="company_id.behavioral_quiet_start", readonly=False)
    behavioral_quiet_end = fields.Float(related="company_id.behavioral_quiet_end", readonly=False)
    behavioral_cap_count = fields.Integer(related="company_id.behavioral_cap_count", readonly=False)
    behavioral_cap_hours = fields.Integer(related="company_id.behavioral_cap_hours", readonly=False)

    @api.constrains(
        "behavioral_enroll_batch_size", "behavioral_advance_batch_size",
        "behavioral_bounce_limit", "behavioral_trigger_retention_days", "behavioral_trace_body_retention_days",
        "behavioral_delivery_retry_hours")
    def _check_behavioral_limits(self):
        for settings in self:
            for fname in ("behavioral_enroll_batch_size", "behavioral_advance_batch_size", "behavioral_bounce_limit"):
                if settings[fname] < 1:
                    raise ValidationError(self.env._(
                        "Behavioral Email: %(setting)s must be at least 1 (it is %(value)s).",
                        setting=self._fields[fname]._description_string(self.env),
                        value=settings[fname]))
            if settings.behavioral_delivery_retry_hours < 0:
                raise ValidationError(self.env._(
                    "Behavioral Email: the delivery retry period cannot be negative; 0 does not retry."))
            if settings.behavioral_trigger_retention_days < 0:
                raise ValidationError(self.env._(
                    "Behavioral Email: the trigger retention cannot be negative; 0 keeps triggers forever."))
            if settings.behavioral_trace_body_retention_days < 0:
                raise ValidationError(self.env._(
                    "Behavioral Email: the retention of email copies cannot be negative; "
                    "0 keeps them forever."))

    def set_values(self):
        super().set_values()
        # The generic code deletes the parameter of an integer setting set to
        # 0, and the crons would then fall back to their defaults (180 and 90
        # days of retention, 24 hours of retries): a 0 must be stored explicitly.
        for fname, param in (("behavioral_trigger_retention_days", RETENTION_PARAM),
                             ("behavioral_trace_body_retention_days", BODY_RETENTION_PARAM),
                             ("behavioral_delivery_retry_hours", DELIVERY_RETRY_PARAM)):
            if self[fname] == 0:
                self.env["ir.config_parameter"].sudo().set_param(param, "0")
