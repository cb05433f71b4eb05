import logging
from ast import literal_eval
from datetime import timedelta

from markupsafe import Markup

from odoo import api, fields, models, tools
from odoo.exceptions import UserError, ValidationError
from odoo.osv import expression
from odoo.tools import SQL

from ..tools import is_concurrency_error
from ..tools.cadence import format_hour

_logger = logging.getLogger(__name__)

DELAY_UNITS = {
    "minutes": lambda n: timedelta(minutes=n),
    "hours": lambda n: timedelta(hours=n),
    "days": lambda n: timedelta(days=n),
    "weeks": lambda n: timedelta(weeks=n),
}

BRANCH_CONDITIONS = [
    ("always", "Always"),
    ("opened", "If the email was opened"),
    ("not_opened", "If the email was not opened"),
    ("clicked", "If a link was clicked"),
    ("not_clicked", "If no link was clicked"),
    ("holds", "If the condition holds"),
    ("not_holds", "If the condition does not hold"),
]
# branch conditions read on the parent email's mailing trace
ENGAGEMENT_BRANCHES = {"opened", "not_opened", "clicked", "not_clicked"}

WEEKDAY_FIELDS = ["send_monday", "send_tuesday", "send_wednesday", "send_thursday",
                  "send_friday", "send_saturday", "send_sunday"]


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
    (``behavioral.enrollment._get_cadence_delays``): its own send window
    (``send_hour_from`` to ``send_hour_to``, on the chosen weekdays) and,
    for the kinds that reach the customer (``_get_cadence_kinds``), the
    company's quiet hours and frequency cap.

    Branches: a step follows its ``parent_id``, or, without one, the step
    before it in order (a plain chain, the default). The steps that follow a
    step are alternatives, tried in the order of their delay (then their
    order): when one is due, its ``branch_condition`` is checked (the
    parent's email opened or clicked within the child's delay, or a domain on
    the customer or the source document); the first that holds runs, the
    others are skipped with a trace saying why, and the enrollment goes on
    down the branch taken. A child "if not opened within 2 days" is thus
    decided 2 days after its parent ran.
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
    # branches
    parent_id = fields.Many2one(
        "behavioral.sequence.step", string="Follows", ondelete="set null", index="btree_not_null",
        copy=False, domain="[('sequence_id', '=', sequence_id), ('id', '!=', id)]",
        help="The step this one follows. Leave empty to follow the previous step in order.")
    child_ids = fields.One2many("behavioral.sequence.step", "parent_id", string="Branches")
    branch_condition = fields.Selection(
        BRANCH_CONDITIONS, string="Run", default="always", required=True,
        help="When this step runs after the step it follows. Opened and clicked are checked "
             "on the previous email, within this step's delay: a step 'if not opened' with a "
             "2-day delay is decided 2 days after that email was sent.")
    branch_target = fields.Selection(
        [("source", "Source document"), ("partner", "Customer")], string="Condition On",
        default="source", required=True)
    branch_domain = fields.Char("Branch Condition", default="[]")
    branch_model = fields.Char(compute="_compute_branch_model")
    depth = fields.Integer(compute="_compute_tree", help="How deep in the tree of branches the step is.")
    tree_label = fields.Char("Step", compute="_compute_tree")
    # send window, in the recipient's time zone
    send_hour_from = fields.Float(
        "Send From", default=0.0,
        help="The step runs only from this hour of the recipient's day (their time zone).")
    send_hour_to = fields.Float(
        "Send Until", default=24.0,
        help="The step runs only until this hour of the recipient's day (their time zone).")
    send_monday = fields.Boolean("Monday", default=True)
    send_tuesday = fields.Boolean("Tuesday", default=True)
    send_wednesday = fields.Boolean("Wednesday", default=True)
    send_thursday = fields.Boolean("Thursday", default=True)
    send_friday = fields.Boolean("Friday", default=True)
    send_saturday = fields.Boolean("Saturday", default=True)
    send_sunday = fields.Boolean("Sunday", default=True)
    # statistics
    trace_ids = fields.One2many("behavioral.trace", "step_id")
    sent_count = fields.Integer(compute="_compute_statistics")
    skipped_count = fields.Integer(compute="_compute_statistics")
    failed_count = fields.Integer(compute="_compute_statistics")

    @api.depends("step_type")
    def _compute_name(self):
        labels = dict(self._fields["step_type"]._description_selection(self.env))
        for step in self:
            step.name = step.name or labels.get(step.step_type)

    def _compute_statistics(self):
        data = self.env["behavioral.trace"]._read_group(
            [("step_id", "in", self.ids)], ["step_id", "state"], ["__count"])
        sent, skipped, failed = {}, {}, {}
        for step, state, count in data:
            if state == "sent":
                sent[step] = count
            elif state == "skipped":
                skipped[step] = count
            elif state in ("failed", "canceled"):
                failed[step] = failed.get(step, 0) + count
        for step in self:
            step.sent_count = sent.get(step, 0)
            step.skipped_count = skipped.get(step, 0)
            step.failed_count = failed.get(step, 0)

    @api.depends("branch_target", "sequence_id.source_model")
    def _compute_branch_model(self):
        for step in self:
            step.branch_model = step._get_condition_model(step.branch_target)

    @api.depends("name", "parent_id", "branch_condition", "sequence", "delay_value", "delay_unit",
                 "sequence_id.step_ids")
    def _compute_tree(self):
        """An indented label per step: children one level below their parent,
        a step without parent at the level of the step before it."""
        conditions = dict(self._fields["branch_condition"]._description_selection(self.env))
        units = dict(self._fields["delay_unit"]._description_selection(self.env))
        for sequence in self.sequence_id:
            depth = {}
            previous = None
            for step in sequence.step_ids.sorted():
                if step.parent_id and step.parent_id in depth:
                    depth[step] = depth[step.parent_id] + 1
                else:
                    depth[step] = depth.get(previous, 0)
                previous = step
            for step, level in depth.items():
                label = step.name or ""
                if step.branch_condition != "always" or step.parent_id:
                    label = self.env._(
                        "%(condition)s within %(value)s %(unit)s: %(name)s",
                        condition=conditions.get(step.branch_condition), value=step.delay_value,
                        unit=units.get(step.delay_unit, "").lower(), name=label)
                step.depth = level
                step.tree_label = ("\u2003" * level) + ("\u21b3 " if level else "") + label
        for step in self.filtered(lambda s: not s.sequence_id or s not in s.sequence_id.step_ids):
            step.depth = 0
            step.tree_label = step.name

    @api.constrains("delay_value")
    def _check_delay(self):
        if any(step.delay_value < 0 for step in self):
            raise ValidationError(self.env._("A step delay cannot be negative."))

    @api.constrains("condition_domain")
    def _check_condition(self):
        for step in self:
            error = step._get_domain_error(step.sequence_id.source_model, step.condition_domain)
            if error:
                raise ValidationError(self.env._(
                    "The condition of step %(step)s is not a valid domain: %(error)s",
                    step=step.display_name, error=error)) from error

    @api.constrains("parent_id", "branch_condition", "sequence", "sequence_id")
    def _check_branches(self):
        for step in self:
            steps = list(step.sequence_id.step_ids.sorted())
            if step.parent_id:
                if step.parent_id.sequence_id != step.sequence_id:
                    raise ValidationError(self.env._(
                        "Step %(step)s can only follow a step of its own sequence.", step=step.display_name))
                if step.parent_id in steps and steps.index(step.parent_id) >= steps.index(step):
                    raise ValidationError(self.env._(
                        "Step %(step)s must come after the step it follows (%(parent)s): reorder the steps.",
                        step=step.display_name, parent=step.parent_id.display_name))
            parent = step._get_parent_step()
            if step.branch_condition != "always" and not parent:
                raise ValidationError(self.env._(
                    "The first step of a sequence runs for everyone: it cannot have a branch condition."))
            if step.branch_condition in ENGAGEMENT_BRANCHES and "engagement" not in \
                    self._get_cadence_kinds().get(parent.step_type, set()):
                raise ValidationError(self.env._(
                    "Step %(step)s depends on opens or clicks: it must follow an email step.",
                    step=step.display_name))

    @api.constrains("branch_domain", "branch_target")
    def _check_branch_domain(self):
        for step in self:
            error = step._get_domain_error(step.branch_model, step.branch_domain)
            if error:
                raise ValidationError(self.env._(
                    "The branch condition of step %(step)s is not a valid domain: %(error)s",
                    step=step.display_name, error=error)) from error

    @api.constrains("send_hour_from", "send_hour_to", *WEEKDAY_FIELDS)
    def _check_send_window(self):
        for step in self:
            if not 0.0 <= step.send_hour_from < step.send_hour_to <= 24.0:
                raise ValidationError(self.env._(
                    "The send window of step %(step)s must start before it ends, within the day "
                    "(%(start)s - %(end)s).", step=step.display_name,
                    start=format_hour(step.send_hour_from), end=format_hour(step.send_hour_to)))
            if not any(step[fname] for fname in WEEKDAY_FIELDS):
                raise ValidationError(self.env._(
                    "Step %(step)s must be allowed on at least one weekday.", step=step.display_name))

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

    def action_send_test(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": self.env._("Send a Test"),
            "res_model": "behavioral.step.test",
            "view_mode": "form",
            "target": "new",
            "context": {"default_step_id": self.id},
        }

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

    def _get_condition_model(self, target):
        """Model a condition of this step reads: the customer's
        (``target`` 'partner') or the source document's."""
        self.ensure_one()
        return "res.partner" if target == "partner" else self.sequence_id.source_model

    @api.model
    def _get_domain_error(self, model, domain):
        """Why ``domain`` (the text of a domain) cannot search ``model``:
        the error raised, or None when it can."""
        try:
            self.env[model].sudo().search_count(literal_eval(domain or "[]"), limit=1)
        except Exception as exc:  # noqa: BLE001 - any error makes the domain invalid; the caller says so
            return exc
        return None

    def _get_domain_matches(self, enrollments, target, domain):
        """Ids of the enrollments whose customer (``target`` 'partner') or
        source document (otherwise) meets ``domain`` (the text of a domain),
        archived records included; one search for the group."""
        self.ensure_one()
        on_partner = target == "partner"
        ids = enrollments.mapped("partner_id.id") if on_partner else enrollments.mapped("res_id")
        domain = expression.AND([literal_eval(domain or "[]"), [("id", "in", ids)]])
        Model = self.env[self._get_condition_model(target)].sudo().with_context(active_test=False)
        matching = set(Model.search(domain).ids)
        return {e.id for e in enrollments if (e.partner_id.id if on_partner else e.res_id) in matching}

    def _get_content_problem(self):
        """Why this step cannot run as it is (a sentence), or False."""
        self.ensure_one()
        return False

    @api.model
    def _get_message_kinds(self):
        """The step kinds that reach the customer (an email, a text message),
        extended by the kind files: a holdout enrollment skips them."""
        return set()

    @api.model
    def _get_cadence_kinds(self):
        """What the cadence gate applies to each step kind, extended by the
        kind files: {step_type: set of 'quiet' (company quiet hours apply),
        'cap' (counts in and obeys the frequency cap), 'engagement' (opens
        and clicks can be branched on)}. Every step obeys its own send window."""
        return {}

    def _get_weekdays(self):
        """Weekdays (Monday = 0) on which this step may run."""
        self.ensure_one()
        return frozenset(day for day, fname in enumerate(WEEKDAY_FIELDS) if self[fname])

    def _has_send_window(self):
        self.ensure_one()
        return self.send_hour_from > 0.0 or self.send_hour_to < 24.0 or len(self._get_weekdays()) < 7

    def _get_parent_step(self):
        """The step this one follows: its parent, or the step before it."""
        self.ensure_one()
        if self.parent_id:
            return self.parent_id
        steps = list(self.sequence_id.step_ids.sorted())
        index = steps.index(self) if self in steps else 0
        return steps[index - 1] if index > 0 else self.browse()

    def _get_children(self):
        """The steps following this one, in the order they are decided:
        by delay, then by order."""
        self.ensure_one()
        steps = self.sequence_id.step_ids.sorted()
        children = steps.filtered(lambda s: s != self and s._get_parent_step() == self)
        return children.sorted(lambda s: (s._get_delay(), s.sequence, s.id))

    def _get_next_step(self):
        """The next step to wait for after this one: the first of its
        children; the others are tried in turn if its branch condition fails."""
        self.ensure_one()
        return self._get_children()[:1]

    def _get_next_sibling(self):
        """The alternative to try when this step's branch condition fails."""
        self.ensure_one()
        parent = self._get_parent_step()
        if not parent:
            return self.browse()
        siblings = list(parent._get_children())
        index = siblings.index(self) if self in siblings else len(siblings)
        return siblings[index + 1] if index + 1 < len(siblings) else self.browse()

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
        # branches: a step whose branch condition fails hands over to the next alternative
        pending = enrollments.filtered(lambda e: e.id not in outcomes)
        if pending and self.branch_condition != "always":
            outcomes.update(self._check_branch(pending))
        # condition on the source document
        if literal_eval(self.condition_domain or "[]"):
            pending = enrollments.filtered(lambda e: e.id not in outcomes)
            matching = self._get_domain_matches(pending, "source", self.condition_domain)
            for enrollment in pending.filtered(lambda e: e.id not in matching):
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

    # ------------------------------------------------------------
    # BRANCHES
    # ------------------------------------------------------------

    def _check_branch(self, enrollments):
        """Outcomes of the enrollments for which this step's branch condition
        does not hold: skipped, on to the next alternative (due its own delay
        after the parent ran). A fixed number of queries for the group.

        :return dict: {enrollment id: outcome} for the branch not taken only
        """
        self.ensure_one()
        parent = self._get_parent_step()
        ran_at = self._get_parent_run_dates(enrollments, parent)
        condition = self.branch_condition
        if condition in ENGAGEMENT_BRANCHES:
            engagement = self._get_engagement(enrollments, parent)
            limit = self._get_delay()
            holds = set()
            for enrollment in enrollments:
                opened, clicked = engagement.get(enrollment.id, (None, None))
                start = ran_at.get(enrollment.id)
                moment = clicked if condition in ("clicked", "not_clicked") else opened
                engaged = bool(moment and start and moment <= start + limit)
                if engaged == (condition in ("opened", "clicked")):
                    holds.add(enrollment.id)
        else:
            matching = self._get_domain_matches(enrollments, self.branch_target, self.branch_domain)
            holds = {e.id for e in enrollments if (e.id in matching) == (condition == "holds")}
        sibling = self._get_next_sibling()
        label = dict(self._fields["branch_condition"]._description_selection(self.env)).get(condition)
        now = fields.Datetime.now()
        outcomes = {}
        for enrollment in enrollments.filtered(lambda e: e.id not in holds):
            start = ran_at.get(enrollment.id) or now
            outcomes[enrollment.id] = {
                "state": "skipped",
                "state_msg": self.env._("Branch not taken: %(condition)s did not hold.", condition=label.lower()),
                "next_step_id": sibling.id,
                "next_due": max(start + sibling._get_delay(), now) if sibling else None,
            }
        return outcomes

    def _get_parent_run_dates(self, enrollments, parent):
        """{enrollment id: when ``parent`` ran for it}, one query."""
        if not parent or not enrollments:
            return {}
        self.env["behavioral.trace"].flush_model(["enrollment_id", "step_id", "executed_at"])
        self.env.cr.execute(SQL(
            "SELECT enrollment_id, executed_at FROM behavioral_trace WHERE step_id = %s AND enrollment_id IN %s",
            parent.id, tuple(enrollments.ids)))
        return dict(self.env.cr.fetchall())

    def _get_engagement(self, enrollments, parent):
        """{enrollment id: (opened on, clicked on)} of ``parent``'s email, from
        mailing.trace, one query for the group."""
        if not parent or not enrollments:
            return {}
        self.env["behavioral.trace"].flush_model(["enrollment_id", "step_id", "mailing_trace_id"])
        self.env["mailing.trace"].flush_model(["open_datetime", "links_click_datetime"])
        self.env.cr.execute(SQL(
            """SELECT bt.enrollment_id, mt.open_datetime, mt.links_click_datetime
                 FROM behavioral_trace bt
                 JOIN mailing_trace mt ON mt.id = bt.mailing_trace_id
                WHERE bt.step_id = %s AND bt.enrollment_id IN %s""",
            parent.id, tuple(enrollments.ids)))
        # a click implies the email was opened
        return {row[0]: (row[1] or row[2], row[2]) for row in self.env.cr.fetchall()}

    # ------------------------------------------------------------
    # CUSTOMER PREFERENCES (preference page link in every marketing email)
    # ------------------------------------------------------------

    def _get_preference_footer(self, enrollment, body=""):
        """Footer of a marketing email: why the customer receives it (the
        sequence's ``reason_text``) and a signed link to their preference page,
        in the customer's language. Not a tracked link: it is personal."""
        self.ensure_one()
        partner = enrollment.partner_id
        step = self.with_context(lang=partner.lang or self.env.lang)
        reason = step.sequence_id.reason_text
        url = f"{self.mailing_id.get_base_url()}{partner._behavioral_preference_path()}"
        reason_html = Markup('<p style="margin:0 0 4px 0;">%s</p>') % reason if reason else ""
        # the email's own footer block may already carry the link
        link_html = Markup('<a href="%s" style="color:#888888;">%s</a>') % (
            url, step.env._("Manage preferences")) if url not in (body or "") else ""
        if not (reason_html or link_html):
            return ""
        return Markup(
            '<div class="o_behavioral_preferences" style="margin:8px auto 0 auto;max-width:600px;'
            'text-align:center;font-size:12px;color:#888888;font-family:Arial,Helvetica,sans-serif;">'
            '%s%s</div>'
        ) % (reason_html, link_html)

    def _add_preference_footer(self, enrollment, body):
        """``body`` with the preference footer of ``enrollment`` appended,
        unless the sequence is transactional."""
        if self.sequence_id.consent_mode == "transactional":
            return body
        footer = self._get_preference_footer(enrollment, body)
        return tools.mail.append_content_to_html(body, footer, plaintext=False) if footer else body
