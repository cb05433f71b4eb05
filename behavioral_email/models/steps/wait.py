from ast import literal_eval
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from ..behavioral_sequence_step import DELAY_UNITS


class BehavioralSequenceStep(models.Model):
    """Step kind ``wait``: hold the enrollment until something happens.

    Either a condition (a domain on the customer or on the source document)
    comes to hold, or an event happens (a new trigger of the chosen kind for
    the same customer, e.g. an order confirmed), whichever the step asks for;
    or the timeout passes. The wait starts when the step falls due (its delay
    after the previous step). Meanwhile the enrollment is postponed and
    re-checked every ``behavioral_email.wait_poll_minutes`` (15 by default):
    no trace, the cron never sleeps. Outcomes: ``sent`` when the condition or
    event came (the sequence goes on), ``skipped`` with "timed out" when the
    timeout passed first (the sequence goes on too: a following step can
    branch on the condition).
    """

    _inherit = "behavioral.sequence.step"

    step_type = fields.Selection(selection_add=[("wait", "Wait")], ondelete={"wait": "cascade"})
    wait_mode = fields.Selection(
        [("condition", "A condition holds"), ("event", "An event happens")],
        string="Wait Until", default="condition", required=True)
    wait_target = fields.Selection(
        [("source", "Source document"), ("partner", "Customer")], string="Wait Condition On",
        default="source", required=True)
    wait_domain = fields.Char("Wait Condition", default="[]")
    wait_model = fields.Char(compute="_compute_wait_model")
    wait_trigger_type = fields.Selection(
        selection="_selection_wait_trigger_type", string="Event",
        help="A new trigger of this kind for the same customer ends the wait.")
    wait_timeout_value = fields.Integer("Timeout", default=3)
    wait_timeout_unit = fields.Selection(
        [("minutes", "Minutes"), ("hours", "Hours"), ("days", "Days"), ("weeks", "Weeks")],
        string="Timeout Unit", default="days", required=True)

    @api.model
    def _selection_wait_trigger_type(self):
        return self.env["behavioral.trigger"]._fields["trigger_type"]._description_selection(self.env)

    @api.depends("wait_target", "sequence_id.source_model")
    def _compute_wait_model(self):
        for step in self:
            step.wait_model = step._get_condition_model(step.wait_target)

    @api.constrains("wait_domain", "wait_target", "wait_timeout_value")
    def _check_wait(self):
        for step in self.filtered(lambda s: s.step_type == "wait"):
            if step.wait_timeout_value <= 0:
                raise ValidationError(self.env._("A wait step needs a timeout."))
            error = step._get_domain_error(step.wait_model, step.wait_domain)
            if error:
                raise ValidationError(self.env._(
                    "The wait condition of step %(step)s is not a valid domain: %(error)s",
                    step=step.display_name, error=error)) from error

    def _get_content_problem(self):
        if self.step_type != "wait":
            return super()._get_content_problem()
        if self.wait_mode == "event" and not self.wait_trigger_type:
            return self.env._("waits for an event: choose which.")
        if self.wait_mode == "condition" and not literal_eval(self.wait_domain or "[]"):
            return self.env._("waits for a condition: set it.")
        return False

    def _get_wait_timeout(self):
        self.ensure_one()
        return DELAY_UNITS[self.wait_timeout_unit](self.wait_timeout_value)

    # ------------------------------------------------------------
    # EXECUTION
    # ------------------------------------------------------------

    def _run_wait(self, enrollments):
        now = fields.Datetime.now()
        starts = {
            enrollment.id: (enrollment.last_step_date or enrollment.trigger_id.occurred_at
                            or enrollment.create_date) + self._get_delay()
            for enrollment in enrollments
        }
        if self.wait_mode == "event":
            met = self._get_wait_events(enrollments, starts)
        else:
            met = self._get_domain_matches(enrollments, self.wait_target, self.wait_domain)
        poll = timedelta(minutes=int(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.wait_poll_minutes", 15)) or 15)
        timeout = self._get_wait_timeout()
        labels = dict(self._fields["wait_mode"]._description_selection(self.env))
        outcomes = {}
        for enrollment in enrollments:
            deadline = starts[enrollment.id] + timeout
            if enrollment.id in met:
                outcomes[enrollment.id] = {
                    "state": "sent",
                    "state_msg": self.env._("Wait over: %(what)s", what=labels[self.wait_mode].lower()),
                }
            elif now >= deadline:
                outcomes[enrollment.id] = {"state": "skipped", "state_msg": self.env._("Wait timed out.")}
            else:
                outcomes[enrollment.id] = {
                    "state": "postponed", "next_due": min(now + poll, deadline),
                    "state_msg": self.env._("Waiting until %(what)s (at the latest %(deadline)s)",
                                            what=labels[self.wait_mode].lower(),
                                            deadline=self.env["behavioral.enrollment"]._format_datetime(deadline)),
                }
        return outcomes

    def _get_wait_events(self, enrollments, starts):
        """Enrollments whose customer had a trigger of the chosen kind since
        their wait began, one query."""
        self.env["behavioral.trigger"].flush_model(["partner_id", "trigger_type", "occurred_at"])
        rows = SQL(", ").join(
            SQL("(%s::int, %s::int, %s::timestamp)", e.id, e.partner_id.id, starts[e.id]) for e in enrollments)
        self.env.cr.execute(SQL(
            """SELECT v.id FROM (VALUES %s) AS v(id, partner_id, since)
                WHERE EXISTS (SELECT 1 FROM behavioral_trigger t
                               WHERE t.partner_id = v.partner_id AND t.trigger_type = %s
                                 AND t.occurred_at >= v.since)""",
            rows, self.wait_trigger_type))
        return {row[0] for row in self.env.cr.fetchall()}
