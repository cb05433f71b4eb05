import logging
from ast import literal_eval
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.osv import expression

from ..tools import is_concurrency_error

_logger = logging.getLogger(__name__)

DELAY_UNITS = {
    "minutes": lambda n: timedelta(minutes=n),
    "hours": lambda n: timedelta(hours=n),
    "days": lambda n: timedelta(days=n),
    "weeks": lambda n: timedelta(weeks=n),
}


class BehavioralSequenceStep(models.Model):
    """One step of a sequence.

    Step kinds are an extension point, one file per kind under
    ``models/steps/``: a kind adds itself to ``step_type`` with
    ``selection_add`` and implements ``_run_<kind>(enrollments)``, which runs
    the step for a batch of due enrollments (all on this step) and returns one
    outcome per enrollment: ``{enrollment id: {'state': ..., 'failure_type':
    ..., 'state_msg': ..., and the kind's own trace values}}`` (see
    ``behavioral.enrollment._record_outcomes`` for the states). A kind may
    also say what keeps it from starting (``_get_content_problem``).

    Timing: the first step runs ``delay`` after the trigger (e.g. when the cart
    became abandoned); every later step ``delay`` after the previous step
    actually ran; every step passes the cadence gate first
    (``behavioral.enrollment._get_cadence_delays``).
    """

    _name = "behavioral.sequence.step"
    _description = "Behavioral Sequence Step"
    _order = "sequence_id, sequence, id"

    sequence_id = fields.Many2one(
        "behavioral.sequence", required=True, ondelete="cascade", index=True)
    sequence = fields.Integer("Order", default=10)
    step_type = fields.Selection(
        [], string="Type", required=True, default="email",
        help="What the step does when it is due.")
    name = fields.Char(compute="_compute_name", store=True, readonly=False)
    delay_value = fields.Integer("Delay", required=True)
    delay_unit = fields.Selection(
        [("minutes", "Minutes"), ("hours", "Hours"), ("days", "Days"), ("weeks", "Weeks")],
        default="days", required=True)
    condition_domain = fields.Char(
        "Condition", default="[]",
        help="Checked on the source document (cart, order or contact) when the step is due: "
             "if it does not match, this step is skipped and the sequence goes on.")
    company_id = fields.Many2one(related="sequence_id.company_id", store=True)
    # statistics
    trace_ids = fields.One2many("behavioral.trace", "step_id")
    sent_count = fields.Integer(compute="_compute_statistics")
    failed_count = fields.Integer(compute="_compute_statistics")

    @api.depends("step_type")
    def _compute_name(self):
        labels = dict(self._fields["step_type"]._description_selection(self.env))
        for step in self:
            step.name = step.name or labels.get(step.step_type)

    def _compute_statistics(self):
        data = self.env["behavioral.trace"]._read_group(
            [("step_id", "in", self.ids)], ["step_id", "state"], ["__count"])
        sent, failed = {}, {}
        for step, state, count in data:
            if state == "sent":
                sent[step] = count
            elif state in ("failed", "canceled"):
                failed[step] = failed.get(step, 0) + count
        for step in self:
            step.sent_count = sent.get(step, 0)
            step.failed_count = failed.get(step, 0)

    @api.constrains("delay_value")
    def _check_delay(self):
        if any(step.delay_value < 0 for step in self):
            raise ValidationError(self.env._("A step delay cannot be negative."))

    @api.constrains("condition_domain")
    def _check_condition(self):
        for step in self:
            try:
                domain = literal_eval(step.condition_domain or "[]")
                self.env[step.sequence_id.source_model].sudo().search_count(domain, limit=1)
            except Exception as exc:
                raise ValidationError(self.env._(
                    "The condition of step %(step)s is not a valid domain: %(error)s",
                    step=step.display_name, error=exc)) from exc

    # ------------------------------------------------------------
    # ORM
    # ------------------------------------------------------------

    @api.ondelete(at_uninstall=False)
    def _unlink_except_waiting_enrollments(self):
        waiting = self.env["behavioral.enrollment"].sudo().search_count([
            ("step_id", "in", self.ids), ("state", "in", ("running", "failed")),
        ])
        if waiting:
            raise UserError(self.env._(
                "%(count)s enrollment(s) are waiting for this step. Pause the sequence and stop "
                "them, or keep the step and change its content instead.", count=waiting))

    def _sync_sequence_settings(self):
        """Mirror the sequence's settings (sender, campaign...) where a step
        kind keeps a copy of them; called when the sequence changes."""
        return

    # ------------------------------------------------------------
    # TOOLS
    # ------------------------------------------------------------

    def _get_delay(self):
        self.ensure_one()
        return DELAY_UNITS[self.delay_unit](self.delay_value)

    def _get_content_problem(self):
        """Why this step cannot run as it is (a sentence), or False."""
        self.ensure_one()
        return False

    @api.model
    def _get_message_kinds(self):
        """The step kinds that reach the customer (an email, a text message),
        extended by the kind files: a holdout enrollment skips them."""
        return set()

    def _get_next_step(self):
        self.ensure_one()
        steps = self.sequence_id.step_ids.sorted()
        index = list(steps).index(self)
        return steps[index + 1] if index + 1 < len(steps) else self.browse()

    # ------------------------------------------------------------
    # EXECUTION
    # ------------------------------------------------------------

    def _execute_isolated(self, enrollments):
        """Run this step for these enrollments; when the group fails as a
        whole, run it for each enrollment alone, so that only an enrollment
        that fails again alone is failed (with the error), never the batch.

        Transient conflicts are raised for the whole batch to be retried in a
        new transaction (``process_in_batches``).

        :return dict: {enrollment id: outcome}
        """
        self.ensure_one()
        try:
            with self.env.cr.savepoint():
                return self._execute(enrollments)
        except Exception as exc:  # noqa: BLE001 - retried one by one below
            if is_concurrency_error(exc):
                raise
            if len(enrollments) == 1:
                return {enrollments.id: self._get_error_outcome(exc)}
            _logger.exception("behavioral_email: step %s failed for %s enrollments, retrying one by one",
                              self.id, len(enrollments))
        self.env.invalidate_all()
        outcomes = {}
        for enrollment in enrollments:
            try:
                with self.env.cr.savepoint():
                    outcomes.update(self._execute(enrollment))
            except Exception as exc:  # noqa: BLE001 - recorded on that enrollment only
                if is_concurrency_error(exc):
                    raise
                _logger.exception("behavioral_email: step %s failed for %s", self.id, enrollment)
                self.env.invalidate_all()
                outcomes[enrollment.id] = self._get_error_outcome(exc)
        return outcomes

    def _get_error_outcome(self, exc):
        return {
            "state": "failed", "failure_type": "unknown",
            "state_msg": self.env._("Unexpected error: %s", exc),
        }

    def _execute(self, enrollments):
        """Run this step for these enrollments (all due, all on this step).

        Checks what every kind needs (the source document still exists, the
        step's condition), then hands the rest to ``_run_<step_type>``.

        :return dict: {enrollment id: outcome}, one per enrollment
        """
        self.ensure_one()
        sequence = self.sequence_id
        outcomes = {}
        Source = self.env[sequence.source_model].sudo().with_context(active_test=False)
        # the source document must still exist
        existing = set(Source.browse(enrollments.mapped("res_id")).exists().ids)
        for enrollment in enrollments.filtered(lambda e: e.res_id not in existing):
            outcomes[enrollment.id] = {
                "state": "canceled", "failure_type": "source_missing",
                "state_msg": self.env._("The %(model)s this enrollment is about was deleted.",
                               model=Source._description),
            }
        # condition on the source document
        condition = literal_eval(self.condition_domain or "[]")
        if condition:
            pending = enrollments.filtered(lambda e: e.id not in outcomes)
            matching = set(Source.search(
                expression.AND([condition, [("id", "in", pending.mapped("res_id"))]])).ids)
            for enrollment in pending.filtered(lambda e: e.res_id not in matching):
                outcomes[enrollment.id] = {
                    "state": "skipped", "state_msg": self.env._("The step condition did not match."),
                }
        pending = enrollments.filtered(lambda e: e.id not in outcomes)
        # -- holdout: the control group goes through the sequence like everyone
        # else (goals, exits, timing) but is sent nothing --
        if self.step_type in self._get_message_kinds():
            for enrollment in pending.filtered("is_holdout"):
                outcomes[enrollment.id] = {"state": "skipped", "state_msg": self.env._("holdout")}
            pending = pending.filtered(lambda e: not e.is_holdout)
        # --
        if pending:
            outcomes.update(getattr(self, f"_run_{self.step_type}")(pending))
        return outcomes
