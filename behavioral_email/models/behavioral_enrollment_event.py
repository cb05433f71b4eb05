from odoo import fields, models


class BehavioralEnrollmentEvent(models.Model):
    """What an enrollment's traces cannot tell: when it waited and why, and
    when it ended. Append-only, written by the advancing cron in one
    ``create`` per batch; read by the enrollment's timeline
    (:meth:`behavioral.enrollment._get_timeline`).

    Kinds (``kind``):

    * ``wait``: the step was postponed until ``until`` (quiet hours, send
      window, frequency cap, a wait step's condition, a transient failure);
      ``reason`` says why. Written by
      :meth:`behavioral.enrollment._record_outcomes`, only when the reason
      changes, so that a step polled many times logs one wait.
    * ``end``: the enrollment ended (completed, or exited with its reason).
      Written by :meth:`behavioral.enrollment._end`.
    """

    _name = "behavioral.enrollment.event"
    _description = "Behavioral Enrollment Event"
    _order = "date desc, id desc"
    _log_access = False

    enrollment_id = fields.Many2one(
        "behavioral.enrollment", required=True, ondelete="cascade", index=True, readonly=True)
    partner_id = fields.Many2one(related="enrollment_id.partner_id", store=True, index=True)
    company_id = fields.Many2one(related="enrollment_id.company_id", store=True)
    step_id = fields.Many2one("behavioral.sequence.step", ondelete="set null", readonly=True)
    kind = fields.Selection([("wait", "Waited"), ("end", "Ended")], required=True, readonly=True)
    date = fields.Datetime(required=True, readonly=True, default=fields.Datetime.now)
    until = fields.Datetime(readonly=True)
    reason = fields.Char(readonly=True)
