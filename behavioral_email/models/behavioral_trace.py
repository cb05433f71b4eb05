from odoo import api, fields, models


class BehavioralTrace(models.Model):
    """One step run for one enrollment: at most one per (enrollment, step).

    The unique (enrollment_id, step_id) constraint is what guarantees that a
    step never emails a customer twice, even when crons overlap or crash.

    States (``state``), all set by ``behavioral.enrollment._record_outcomes``:

    * ``sent``: the email was rendered and queued as ``mail_mail_id``; its
      delivery, opens and clicks are followed on ``mailing_trace_id``
      (``trace_status``), as for any mass mailing.
    * ``skipped``: the step's condition did not match the source document;
      nothing was sent and the sequence went on.
    * ``canceled``: consent was missing at send time; ``failure_type`` is one
      of mail_bl (blocklisted), mail_optout (opted out of a topic), mail_bounce
      (address bounced), mail_email_missing, mail_email_invalid; or
      source_missing when the cart, order or contact was deleted meanwhile.
      The enrollment exited.
    * ``failed``: the step could not run; ``failure_type`` is ``render`` (the
      template did not render for this record) or ``unknown``, ``state_msg``
      holds the error. The enrollment is ``failed`` until retried, when this
      same trace is reused.
    """

    _name = "behavioral.trace"
    _description = "Behavioral Sequence Trace"
    _order = "executed_at desc, id desc"
    _rec_name = "step_id"

    enrollment_id = fields.Many2one(
        "behavioral.enrollment", required=True, ondelete="cascade", index=True, readonly=True)
    step_id = fields.Many2one(
        "behavioral.sequence.step", required=True, ondelete="cascade", index=True, readonly=True)
    sequence_id = fields.Many2one(
        related="enrollment_id.sequence_id", store=True, index=True)
    partner_id = fields.Many2one(related="enrollment_id.partner_id", store=True, index=True)
    company_id = fields.Many2one(related="enrollment_id.company_id", store=True)
    state = fields.Selection(
        [("sent", "Sent"), ("skipped", "Skipped"), ("canceled", "Canceled"), ("failed", "Failed")],
        required=True, index=True, readonly=True)
    failure_type = fields.Selection(
        [("mail_bl", "Blocklisted"),
         ("mail_optout", "Opted out"),
         ("mail_bounce", "Bounced address"),
         ("mail_email_missing", "Missing email address"),
         ("mail_email_invalid", "Invalid email address"),
         ("source_missing", "Source document deleted"),
         ("render", "Template error"),
         ("unknown", "Unexpected error")],
        readonly=True)
    state_msg = fields.Text("Message", readonly=True)
    subject = fields.Char(readonly=True, help="The subject as it was rendered for this customer.")
    executed_at = fields.Datetime("Run On", readonly=True, index=True)
    mail_mail_id = fields.Many2one("mail.mail", string="Mail", ondelete="set null", readonly=True,
                                   index="btree_not_null")
    mail_mail_id_int = fields.Integer(
        "Mail ID", readonly=True, index="btree_not_null",
        help="Id of the mail.mail, kept once the mail is deleted after sending.")
    mailing_trace_id = fields.Many2one(
        "mailing.trace", ondelete="set null", readonly=True, index="btree_not_null")
    trace_status = fields.Selection(related="mailing_trace_id.trace_status", string="Delivery")
    open_datetime = fields.Datetime(related="mailing_trace_id.open_datetime")
    links_click_datetime = fields.Datetime(related="mailing_trace_id.links_click_datetime", string="Clicked On")

    _sql_constraints = [
        ("enrollment_step_unique", "UNIQUE(enrollment_id, step_id)",
         "A step runs at most once for an enrollment."),
    ]

    @api.depends("step_id", "partner_id")
    def _compute_display_name(self):
        for trace in self:
            trace.display_name = f"{trace.step_id.display_name} – {trace.partner_id.display_name}"
