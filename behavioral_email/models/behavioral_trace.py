from collections import defaultdict
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..tools import process_in_batches

# days the copy of a sent email is kept (0: forever)
BODY_RETENTION_PARAM = "behavioral_email.trace_body_retention_days"
DEFAULT_BODY_RETENTION_DAYS = 90


class BehavioralTrace(models.Model):
    """One step run for one enrollment: at most one per (enrollment, step).

    The unique (enrollment_id, step_id) constraint is what guarantees that a
    step never emails a customer twice, even when crons overlap or crash.

    States (``state``), all set by ``behavioral.enrollment._record_outcomes``:

    * ``sent``: the email was rendered and queued as ``mail_mail_id``; its
      delivery, opens and clicks are followed on ``mailing_trace_id``
      (``trace_status``), as for any mass mailing. While the mail server is
      unreachable or answers with a temporary error, the mail is retried
      (see ``mail.mail``) and ``state_msg`` says when it is tried next; once
      delivered after such delays, ``state_msg`` says after how many attempts.
    * ``skipped``: the step's condition did not match the source document,
      or the customer is in the sequence's holdout group (``state_msg``
      "holdout"); nothing was sent and the sequence went on.
    * ``canceled``: consent was missing at send time; ``failure_type`` is one
      of mail_bl (blocklisted), mail_optout (opted out of a topic), mail_bounce
      (address bounced), mail_email_missing, mail_email_invalid, no_consent
      (a guest refused by their website's policy); or
      source_missing when the cart, order or contact was deleted meanwhile.
      The enrollment exited.
    * ``failed``: the step could not run; ``failure_type`` is ``render`` (the
      template did not render for this record) or ``unknown``, ``state_msg``
      holds the error. The enrollment is ``failed`` until retried, when this
      same trace is reused. Set by ``_record_outcomes``.
      Or the queued email was never delivered, set from ``sent`` by
      :meth:`_set_delivery_failed`: ``failure_type`` is ``mail_bounce`` when
      the server refused the recipient (a 5xx reply) or the address is invalid
      (counted as a bounce: the enrollment exited), or ``mail_smtp`` when the
      server stayed unreachable or kept answering with temporary errors for
      ``behavioral_email.delivery_retry_hours``, or failed it otherwise (the
      enrollment is ``failed`` on this step, so that Retry sends it again);
      ``state_msg`` holds the server's reply.

    The copy of the email (``body_html``) is personal data kept for staff
    for a retention period only (``behavioral_email.trace_body_retention_days``):
    :meth:`_gc_bodies` then clears it and stamps ``body_purged_on``; the
    trace itself, its state and its delivery, opens and clicks stay, so that
    every count is unchanged.
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
         ("no_consent", "No marketing consent"),
         ("source_missing", "Source document deleted"),
         ("render", "Template error"),
         ("mail_smtp", "Not delivered"),
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
    trace_status = fields.Selection(related="mailing_trace_id.trace_status", string="Delivery", store=True)
    open_datetime = fields.Datetime(related="mailing_trace_id.open_datetime")
    links_click_datetime = fields.Datetime(related="mailing_trace_id.links_click_datetime", string="Clicked On")
    # -- measurement: the A/B variant sent (behavioral_step_variant.py) --
    variant_id = fields.Many2one(
        "behavioral.step.variant", string="Variant", ondelete="set null", readonly=True,
        index="btree_not_null")
    # --
    body_html = fields.Html(
        "Email", readonly=True, sanitize=False,
        help="The email as it was rendered for this customer (before link tracking).")
    body_purged_on = fields.Datetime(
        "Email Copy Deleted On", readonly=True, copy=False,
        help="When the copy of this email was deleted, at the end of the retention period set in "
             "the settings.")

    _sql_constraints = [
        ("enrollment_step_unique", "UNIQUE(enrollment_id, step_id)",
         "A step runs at most once for an enrollment."),
    ]

    def init(self):
        # The purge of old email copies reads only the traces that still hold
        # one: its cost follows the emails sent, not the whole history.
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS behavioral_trace_body_kept_idx "
            "ON behavioral_trace (executed_at) WHERE body_html IS NOT NULL"))

    @api.depends("step_id", "partner_id")
    def _compute_display_name(self):
        for trace in self:
            trace.display_name = f"{trace.step_id.display_name} – {trace.partner_id.display_name}"

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    def action_view_email(self):
        """Show the email as the customer received it, or, once its copy was
        deleted at the end of the retention period, say so."""
        self.ensure_one()
        if not self.body_html and not self.body_purged_on:
            raise UserError(self.env._("The content of this email was not kept."))
        return {
            "type": "ir.actions.act_window",
            "name": self.subject or self.display_name,
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "views": [(self.env.ref("behavioral_email.behavioral_trace_view_form_email").id, "form")],
            "target": "new",
        }

    # ------------------------------------------------------------
    # RETENTION (called by the daily clean-up, behavioral.trigger._cron_gc)
    # ------------------------------------------------------------

    @api.model
    def _gc_bodies(self):
        """Delete the copies of the emails run longer ago than the retention
        period (``behavioral_email.trace_body_retention_days``, 90 days by
        default; 0 keeps them forever), in batches.

        Only ``body_html`` is cleared, and ``body_purged_on`` set: the traces
        stay, and with them every count (sent, delivered, opened, clicked).

        :return int: the number of email copies deleted
        """
        params = self.env["ir.config_parameter"].sudo()
        days = int(params.get_param(BODY_RETENTION_PARAM, DEFAULT_BODY_RETENTION_DAYS))
        if days <= 0:
            return 0
        now = fields.Datetime.now()
        limit = now - timedelta(days=days)
        batch_size = 1000

        def claim():
            self.env.cr.execute(SQL(
                """SELECT id FROM behavioral_trace
                    WHERE body_html IS NOT NULL AND executed_at < %s
                    ORDER BY executed_at, id LIMIT %s FOR UPDATE SKIP LOCKED""", limit, batch_size))
            ids = [row[0] for row in self.env.cr.fetchall()]
            return self.browse(ids), len(ids) == batch_size

        def purge(traces):
            traces.write({"body_html": False, "body_purged_on": now})

        def count_remaining():
            self.env.cr.execute(SQL(
                "SELECT count(*) FROM behavioral_trace WHERE body_html IS NOT NULL AND executed_at < %s",
                limit))
            return self.env.cr.fetchone()[0]

        return process_in_batches(self.env, claim, purge, count_remaining)

    # ------------------------------------------------------------
    # DELIVERY (called by mail.mail once a queued email failed for good)
    # ------------------------------------------------------------

    def _set_delivery_failed(self, failure_type, message):
        """The emails of these traces will never be delivered.

        The traces become ``failed`` with ``failure_type`` (``mail_bounce`` or
        ``mail_smtp``) and ``message``, which the enrollments show too. A bounce
        has already ended its enrollment (``mailing.trace.set_bounced``). For
        any other failure, an enrollment that has not gone past this step is
        ``failed`` on the first of its steps whose email was not delivered,
        so that Retry sends it again (reusing its failed trace); one that has
        moved on (a later step ran) or has ended for another reason keeps its
        state.
        """
        traces = self.filtered(lambda t: t.state == "sent")
        if not traces:
            return
        traces.write({"state": "failed", "failure_type": failure_type, "state_msg": message})
        enrollments = traces.enrollment_id
        enrollments.write({"state_msg": message})
        if failure_type == "mail_bounce":
            return
        resume = defaultdict(list)  # step to send again -> enrollment ids
        for enrollment in enrollments.filtered(lambda e: e.state in ("running", "done", "failed")):
            step = self._get_delivery_resume_step(enrollment)
            if step:
                resume[step].append(enrollment.id)
        for step, enrollment_ids in resume.items():
            enrollments.browse(enrollment_ids).write({
                "state": "failed", "failure_type": failure_type, "step_id": step.id,
                "next_due": False, "wait_reason": False,
            })

    @api.model
    def _get_delivery_resume_step(self, enrollment):
        """The step to send again once ``enrollment`` is retried: the first of
        the failed steps it ends on (nothing when a later step ran)."""
        traces = {trace.step_id: trace for trace in enrollment.trace_ids}
        resume = self.env["behavioral.sequence.step"]
        for step in reversed(enrollment.sequence_id.step_ids.sorted()):
            trace = traces.get(step)
            if not trace:
                continue
            if trace.state != "failed":
                break
            resume = step
        return resume
