import logging
from collections import defaultdict
from datetime import timedelta

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL, format_datetime

from ..tools import BatchWork, cadence, process_in_batches, run_isolated

# minutes before the n-th automatic retry of a step that failed for a
# transient reason (a webhook answering 503, a conflict that kept coming back)
RETRY_BACKOFF_MINUTES = [1, 5, 15, 60, 240]

_logger = logging.getLogger(__name__)

EXIT_REASONS = [
    ("goal", "Goal reached"),
    ("blacklisted", "Blocklisted"),
    ("opted_out", "Opted out"),
    ("bounced", "Bounced"),
    ("no_email", "No valid email"),
    ("no_consent", "No marketing consent"),  # guests, per their website's policy
    ("source_missing", "Source document deleted"),
    ("manual", "Stopped by a user"),
]

# a trace reused on retry forgets what the failed run left
TRACE_DEFAULTS = {
    "failure_type": False,
    "state_msg": False,
    "mail_mail_id": False,
    "mail_mail_id_int": 0,
    "mailing_trace_id": False,
    "subject": False,
    "body_html": False,
    "body_purged_on": False,
}

# timeline entry kind -> badge class
TIMELINE_BADGES = {
    "entered": "text-bg-info",
    "sent": "text-bg-success",
    "skipped": "text-bg-secondary",
    "canceled": "text-bg-warning",
    "failed": "text-bg-danger",
    "waited": "text-bg-light border",
    "ended": "text-bg-dark",
    "next": "text-bg-primary",
}

# failure type of a canceled trace -> exit reason of its enrollment
CONSENT_EXITS = {
    "mail_bl": "blacklisted",
    "mail_optout": "opted_out",
    "mail_bounce": "bounced",
    "mail_email_missing": "no_email",
    "mail_email_invalid": "no_email",
    "no_consent": "no_consent",
    "source_missing": "source_missing",
}


class BehavioralEnrollment(models.Model):
    """One customer (and source document) going through one sequence.

    States (``state``):

    * ``running``: waiting for ``step_id``, due at ``next_due``. Set at
      creation by :meth:`behavioral.sequence._enroll_triggers`; advanced by
      :meth:`_cron_advance`.
    * ``done``: every step ran. Set by :meth:`_advance`.
    * ``exited``: left early, ``exit_reason`` says why: the goal was reached
      (:meth:`_exit_on_goal_triggers`, :meth:`_advance`), the address is
      blocklisted, opted out or bounced (:meth:`_advance`, and
      ``mailing.trace.set_bounced``, also when the mail server refuses the
      recipient while sending: ``state_msg`` holds its reply), or a user
      stopped it (:meth:`action_stop`).
    * ``failed``: a step could not be run (e.g. its template does not render);
      ``state_msg`` holds the error, ``failure_type`` its kind, and the step's
      trace is ``failed``. Set by :meth:`_record_outcomes` (or
      :meth:`_advance_safely` for an unexpected error) when the step fails
      again with the enrollment alone; a step failing for a transient reason
      (outcome ``retry``) stays ``running`` and is retried with backoff
      (``retry_count``, :data:`RETRY_BACKOFF_MINUTES`) before it fails.
      Or an email of the sequence was never delivered (the mail server stayed
      unreachable past the retry limit): ``failure_type`` is ``mail_smtp`` and
      ``step_id`` is set back to that email's step, by
      ``behavioral.trace._set_delivery_failed``.
      :meth:`action_retry` (and the sequence's *Retry failed*) puts it back
      to ``running``, which runs ``step_id`` again.

    A running enrollment whose step may not run yet (quiet hours, frequency
    cap, send window, the customer's pause, a wait step) is postponed, never
    dropped: ``next_due`` moves to the first allowed moment and
    ``wait_reason`` says why (:meth:`_get_cadence_delays`).

    A holdout enrollment (``is_holdout``, drawn at entry by
    ``behavioral.sequence._is_holdout``) goes through the same states and
    steps, but its message steps are skipped with "holdout"
    (``behavioral.sequence.step._execute``): the sequence's control group.
    """

    _name = "behavioral.enrollment"
    _description = "Behavioral Sequence Enrollment"
    _order = "id desc"
    _rec_name = "partner_id"

    sequence_id = fields.Many2one(
        "behavioral.sequence", required=True, ondelete="cascade", index=True, readonly=True)
    trigger_id = fields.Many2one("behavioral.trigger", ondelete="set null", index="btree_not_null", readonly=True)
    partner_id = fields.Many2one(
        "res.partner", string="Customer", required=True, ondelete="cascade", index=True, readonly=True)
    res_model = fields.Char("Source Model", readonly=True)
    res_id = fields.Many2oneReference("Source ID", model_field="res_model", readonly=True)
    order_id = fields.Many2one(
        "sale.order", string="Order / Cart", ondelete="set null", index="btree_not_null", readonly=True)
    state = fields.Selection(
        [("running", "Running"), ("done", "Completed"), ("exited", "Exited"), ("failed", "Failed")],
        default="running", required=True, index=True, readonly=True)
    exit_reason = fields.Selection(EXIT_REASONS, readonly=True)
    state_msg = fields.Text("Message", readonly=True)
    failure_type = fields.Selection(
        selection=lambda self: self.env["behavioral.trace"]._fields["failure_type"]._description_selection(self.env),
        string="Failure Reason", readonly=True, index="btree_not_null")
    retry_count = fields.Integer(
        "Automatic Retries", readonly=True, copy=False,
        help="Transient failures of the current step retried so far.")
    wait_reason = fields.Char(
        "Waiting For", readonly=True,
        help="Why the next step was postponed (quiet hours, frequency cap, send window...).")
    payload = fields.Json(readonly=True, help="What the trigger recorded, kept for goals and content.")
    step_id = fields.Many2one(
        "behavioral.sequence.step", string="Next Step", ondelete="set null", readonly=True)
    next_due = fields.Datetime("Next Step Due", readonly=True)
    last_step_date = fields.Datetime("Last Step On", readonly=True)
    goal_since = fields.Datetime(
        readonly=True, help="Orders confirmed from this moment on reach the goal.")
    converted_order_id = fields.Many2one(
        "sale.order", ondelete="set null", readonly=True, index="btree_not_null",
        help="The order that reached the goal after at least one email of the sequence.")
    dedupe_key = fields.Char(readonly=True, copy=False)
    company_id = fields.Many2one("res.company", index=True, readonly=True)
    trace_ids = fields.One2many("behavioral.trace", "enrollment_id", readonly=True)
    # -- measurement: holdout group and entry time (report/behavioral_report_entrant.py) --
    is_holdout = fields.Boolean(
        "Holdout", readonly=True, copy=False,
        help="In the sequence's control group: followed like everyone else, sent nothing.")
    entered_at = fields.Datetime(
        "Entered On", readonly=True, copy=False, default=fields.Datetime.now,
        help="When the customer entered the sequence: their orders are measured from here.")
    # --
    trace_count = fields.Integer(compute="_compute_trace_count")
    event_ids = fields.One2many("behavioral.enrollment.event", "enrollment_id", readonly=True)
    timeline_html = fields.Html(
        "Timeline", compute="_compute_timeline_html", sanitize=False,
        help="What happened to this customer in this sequence, and why.")
    cart_restore_url = fields.Char(
        compute="_compute_cart_restore_url",
        help="Link that restores the cart in the shop; for use in email templates.")
    # content: what email templates and their dynamic blocks read
    partner_first_name = fields.Char(
        compute="_compute_partner_first_name",
        help="The customer's first name, empty when unknown: use it with a fallback, "
             "e.g. Hi <t t-out=\"object.partner_first_name\">there</t>.")
    order_portal_url = fields.Char(
        compute="_compute_order_portal_url",
        help="Link to the order in the customer portal, with its access token.")
    recommended_product_ids = fields.Many2many(
        "product.product", string="Recommended Products", compute="_compute_recommended_product_ids",
        help="Products to recommend to this customer now, best first (see behavioral.product.affinity).")
    browsed_product_ids = fields.Many2many(
        "product.product", string="Browsed Products", compute="_compute_browsed_product_ids",
        help="Products the customer looked at lately (those the trigger names, then their visits "
             "of the website) and can still buy, latest first.")
    # reporting
    currency_id = fields.Many2one(related="converted_order_id.currency_id", string="Currency")
    revenue = fields.Monetary(
        related="converted_order_id.amount_untaxed", store=True, string="Revenue",
        help="Untaxed total of the order that converted this enrollment.")

    _sql_constraints = [
        ("reentry_unique", "UNIQUE(sequence_id, dedupe_key)",
         "This customer is already enrolled in this sequence."),
        ("trigger_unique", "UNIQUE(sequence_id, trigger_id)",
         "A trigger enrolls at most once in a sequence."),
    ]

    def init(self):
        # The advancing cron only looks at running enrollments that are due.
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS behavioral_enrollment_due_idx "
            "ON behavioral_enrollment (next_due) WHERE state = 'running'"))

    def _compute_trace_count(self):
        counts = dict(self.env["behavioral.trace"]._read_group(
            [("enrollment_id", "in", self.ids)], ["enrollment_id"], ["__count"]))
        for enrollment in self:
            enrollment.trace_count = counts.get(enrollment, 0)

    @api.depends("order_id.access_token")
    def _compute_cart_restore_url(self):
        for enrollment in self:
            enrollment.cart_restore_url = enrollment._get_cart_restore_url()

    @api.depends("partner_id.name", "partner_id.is_company")
    def _compute_partner_first_name(self):
        for enrollment in self:
            partner = enrollment.partner_id
            words = (partner.name or "").split() if not partner.is_company else []
            # a contact named after its email address has no first name
            enrollment.partner_first_name = words[0] if words and "@" not in words[0] else False

    @api.depends("order_id.access_token")
    def _compute_order_portal_url(self):
        for enrollment in self:
            order = enrollment.order_id.sudo()
            enrollment.order_portal_url = (
                f"{order.get_base_url()}{order.get_portal_url()}" if order and order.access_token else False)

    @api.depends("order_id", "partner_id", "payload")
    def _compute_recommended_product_ids(self):
        size = int(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.recommendation_pool_size", 12)) or 12
        recommendations = self.env["behavioral.product.affinity"]._get_recommendations(self, size)
        for enrollment in self:
            enrollment.recommended_product_ids = recommendations[enrollment]

    @api.depends("partner_id", "payload")
    def _compute_browsed_product_ids(self):
        Affinity = self.env["behavioral.product.affinity"]
        browsed = self._get_browsed_product_ids()
        Product = self.env["product.product"]
        available = Affinity._filter_available(self, Product.browse({pid for ids in browsed.values() for pid in ids}))
        for enrollment in self:
            enrollment.browsed_product_ids = Product.browse(
                [pid for pid in browsed[enrollment] if pid in available[enrollment]])

    @api.depends("partner_id", "sequence_id")
    def _compute_display_name(self):
        for enrollment in self:
            enrollment.display_name = f"{enrollment.sequence_id.name} – {enrollment.partner_id.display_name}"

    # ------------------------------------------------------------
    # ACTIONS
    # ------------------------------------------------------------

    @api.model
    def _count_by(self, fname, records):
        """{record: number of enrollments} for the smart buttons of ``records``
        (contacts, carts), grouped on the enrollment field ``fname``."""
        return dict(self.sudo()._read_group([(fname, "in", records.ids)], [fname], ["__count"]))

    @api.model
    def _action_view(self, domain, context=None):
        action = self.env["ir.actions.act_window"]._for_xml_id("behavioral_email.behavioral_enrollment_action")
        action["domain"] = domain
        action["context"] = context or {}
        return action

    def action_stop(self):
        self.filtered(lambda e: e.state in ("running", "failed"))._end("exited", "manual")
        return True

    def action_retry(self):
        failed = self.filtered(lambda e: e.state == "failed")
        if not failed:
            raise UserError(self.env._("Only failed enrollments can be retried."))
        failed.write({
            "state": "running", "next_due": fields.Datetime.now(), "state_msg": False,
            "failure_type": False, "retry_count": 0,
        })
        self._trigger_advance_cron()
        return True

    def action_view_traces(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("behavioral_email.behavioral_trace_action")
        action["domain"] = [("enrollment_id", "=", self.id)]
        return action

    def action_open_source(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "res_model": self.res_model,
            "res_id": self.res_id,
            "view_mode": "form",
        }

    # ------------------------------------------------------------
    # CRON
    # ------------------------------------------------------------

    @api.model
    def _trigger_advance_cron(self, at=None):
        cron = self.env.ref("behavioral_email.ir_cron_behavioral_advance", raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger(at=at)

    def _schedule_advance(self):
        """Wake the advancing cron exactly when these enrollments fall due."""
        now = fields.Datetime.now()
        dues = {
            max(due, now).replace(second=0, microsecond=0)
            for due in self.filtered(lambda e: e.state == "running").mapped("next_due") if due
        }
        if dues:
            self._trigger_advance_cron(at=sorted(dues))

    @api.model
    def _cron_advance(self):
        """Run the due steps, batch after batch.

        Rows are claimed with ``FOR UPDATE SKIP LOCKED``: several cron workers
        share the due enrollments and none is advanced twice. A crashed run is
        safe too: mails and traces of a batch are committed together, and a
        trace is unique per (enrollment, step).
        """
        work = self._get_advance_work()
        return process_in_batches(self.env, work.claim, work.process, work.count_remaining)

    @api.model
    def _get_advance_work(self):
        """The advancing cron's batch: claim due enrollments, run their step."""
        batch_size = int(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.advance_batch_size", 200)) or 200
        due = SQL(
            """FROM behavioral_enrollment e
               JOIN behavioral_sequence s ON s.id = e.sequence_id
              WHERE e.state = 'running' AND e.next_due <= %s AND s.state = 'running'""",
            fields.Datetime.now())

        def claim():
            self.env.flush_all()
            self.env.cr.execute(SQL(
                "SELECT e.id %s ORDER BY e.next_due, e.id LIMIT %s FOR UPDATE OF e SKIP LOCKED",
                due, batch_size))
            ids = [row[0] for row in self.env.cr.fetchall()]
            return self.browse(ids), len(ids) == batch_size

        def count_remaining():
            self.env.cr.execute(SQL("SELECT count(*) %s", due))
            return self.env.cr.fetchone()[0]

        return BatchWork(claim, lambda enrollments: enrollments._advance_safely(), count_remaining, batch_size)

    # ------------------------------------------------------------
    # ADVANCE
    # ------------------------------------------------------------

    def _advance_safely(self):
        """Advance a claimed batch; one record that cannot advance is marked
        failed with its error, the others go on (see ``run_isolated``)."""
        run_isolated(self, "_advance", lambda enrollment, exc: enrollment.write({
            "state": "failed", "failure_type": "unknown",
            "state_msg": self.env._("Unexpected error: %s", exc),
        }))

    def _advance(self):
        """Run the current step of these (due, running) enrollments.

        A fixed number of queries per step present in the batch, whatever the
        number of enrollments: goal check, cadence gate, condition, consent,
        rendering and mail creation are all done for the whole group at once.
        """
        now = fields.Datetime.now()
        # re-checked here: a record read before another worker moved it on
        # is not due any more
        due = self.filtered(lambda e: e.state == "running" and e.next_due and e.next_due <= now)
        enrollments = due.filtered("step_id")
        (due - enrollments)._end("done")
        if not enrollments:
            return
        # exit on goal before anything is sent
        goal_done = enrollments._end_reached_goals()
        enrollments -= goal_done

        outcomes = {}  # enrollment id -> outcome (trace values and moves)
        # cadence: a step that may not run now waits, it is never dropped
        for enrollment_id, (not_before, reason) in enrollments._get_cadence_delays(now).items():
            outcomes[enrollment_id] = {"state": "postponed", "next_due": not_before, "state_msg": reason}
        by_step = defaultdict(list)
        for enrollment in enrollments.filtered(lambda e: e.id not in outcomes):
            by_step[enrollment.step_id].append(enrollment.id)
        for step, group_ids in by_step.items():
            outcomes.update(step._execute_isolated(enrollments.browse(group_ids)))
        self._record_outcomes(enrollments, outcomes)

    def _end_reached_goals(self):
        """End those of these enrollments whose goal is met; return them."""
        reached_all = {}
        for goal in set(self.sequence_id.mapped("goal")) - {"none"}:
            group = self.filtered(lambda e, g=goal: e.sequence_id.goal == g)
            reached = self._get_goal_reached(goal, [
                (e.id, e.partner_id.id, e.order_id.id, e.goal_since, e.payload or {}) for e in group
            ])
            group.filtered(lambda e, r=reached: e.id in r)._end_on_goal(reached)
            reached_all.update(reached)
        return self.filtered(lambda e: e.id in reached_all)

    def _get_cadence_delays(self, now):
        """The cadence gate every step passes before it runs.

        Extended by each rule (quiet hours, send windows, frequency caps, the
        customer's own frequency and pause): an override adds
        ``{enrollment id: (not before, reason)}`` for the enrollments it holds
        back, keeping the later date when several rules hold one back (use
        :meth:`_merge_delays`). Set-based: a fixed number of queries per batch.

        The rules of the addon itself are in the CADENCE section below: the
        recipient's local time first, then the frequency cap among those that
        may go now.

        :return dict: {enrollment id: (datetime, reason)}
        """
        delays = self._get_local_time_delays(now)
        held = set(delays)
        self._merge_delays(delays, self.filtered(lambda e: e.id not in held)._get_frequency_cap_delays(now))
        return delays

    @api.model
    def _merge_delays(self, delays, more):
        """Merge ``more`` into ``delays``, keeping the later moment of each."""
        for enrollment_id, (when, reason) in more.items():
            if enrollment_id not in delays or when > delays[enrollment_id][0]:
                delays[enrollment_id] = (when, reason)
        return delays

    def _record_outcomes(self, enrollments, outcomes):
        """Write the traces of a batch and move each enrollment on.

        Outcome states: ``sent`` and ``skipped`` go to the next step (or the
        one the outcome names in ``next_step_id``); ``canceled`` exits (consent
        or source missing; the outcome may name its ``exit_reason``); ``failed``
        fails the enrollment; ``retry`` keeps it running and retries later
        with backoff, failing it once the retries are spent; ``postponed``
        writes no trace and moves ``next_due``. Waits are logged
        (``behavioral.enrollment.event``) when their reason changes.
        """
        now = fields.Datetime.now()
        Trace = self.env["behavioral.trace"].sudo()
        traced = enrollments.filtered(lambda e: outcomes[e.id]["state"] != "postponed")
        # a failed trace is reused on retry: still one trace per (enrollment, step)
        previous = Trace.search([
            ("enrollment_id", "in", traced.ids), ("state", "=", "failed"),
        ]) if traced else Trace
        previous_map = {(t.enrollment_id.id, t.step_id.id): t for t in previous}
        create_vals = []
        for enrollment in traced:
            outcome = outcomes[enrollment.id]
            vals = dict(TRACE_DEFAULTS, executed_at=now, **{
                key: value for key, value in outcome.items() if key in Trace._fields})
            if vals["state"] == "retry":
                vals["state"] = "failed"
            trace = previous_map.get((enrollment.id, enrollment.step_id.id))
            if trace:
                trace.write(vals)
            else:
                create_vals.append(dict(
                    vals, enrollment_id=enrollment.id, step_id=enrollment.step_id.id))
        Trace.create(create_vals)

        # move enrollments, one write per distinct outcome
        max_retries = len(RETRY_BACKOFF_MINUTES)
        next_steps = {step: step._get_next_step() for step in enrollments.step_id}
        moves = defaultdict(list)
        for enrollment in enrollments:
            outcome = outcomes[enrollment.id]
            state = outcome["state"]
            if state == "retry" and enrollment.retry_count >= max_retries:
                state = "failed"
            if state in ("sent", "skipped"):
                next_step = self.env["behavioral.sequence.step"].browse(outcome["next_step_id"]) \
                    if "next_step_id" in outcome else next_steps[enrollment.step_id]
                key = ("next", next_step, outcome.get("next_due"))
            elif state == "postponed":
                key = ("wait", outcome["next_due"], outcome.get("state_msg"))
            elif state == "retry":
                key = ("retry", enrollment.retry_count, outcome.get("state_msg"))
            elif state == "canceled":
                key = ("exit", outcome.get("exit_reason")
                       or CONSENT_EXITS.get(outcome.get("failure_type"), "no_email"), None)
            else:
                key = ("failed", outcome.get("state_msg"), outcome.get("failure_type") or "unknown")
            moves[key].append(enrollment.id)
        waits = []  # timeline: a wait is logged when its reason changes
        for (kind, value, extra), group_ids in moves.items():
            group = enrollments.browse(group_ids)
            if kind in ("wait", "retry"):
                until = value if kind == "wait" else now + timedelta(minutes=RETRY_BACKOFF_MINUTES[value])
                waits += [{
                    "enrollment_id": enrollment.id, "step_id": enrollment.step_id.id, "kind": "wait",
                    "date": now, "until": until, "reason": extra,
                } for enrollment in group if enrollment.wait_reason != extra or kind == "retry"]
                if kind == "retry":
                    for vals in waits[-len(group):]:
                        vals["reason"] = self.env._("Retry after a transient failure: %(error)s", error=extra)
            if kind == "next":
                if value:
                    group.write({
                        "step_id": value.id,
                        "next_due": extra or now + value._get_delay(),
                        "last_step_date": now,
                        "retry_count": 0,
                        "wait_reason": False,
                    })
                else:
                    group.write({"last_step_date": now, "wait_reason": False})
                    group._end("done")
            elif kind == "wait":
                group.write({"next_due": value, "wait_reason": extra})
            elif kind == "retry":
                group.write({
                    "retry_count": value + 1,
                    "next_due": now + timedelta(minutes=RETRY_BACKOFF_MINUTES[value]),
                    "wait_reason": self.env._("Retry after a transient failure: %(error)s", error=extra),
                })
            elif kind == "exit":
                group.write({"last_step_date": now})
                group._end("exited", value)
            else:
                group.write({"state": "failed", "state_msg": value, "failure_type": extra})
        self.env["behavioral.enrollment.event"].sudo().create(waits)
        enrollments._schedule_advance()

    def _end(self, state, reason=False):
        """Close enrollments; the 'not_running' re-entry key is released."""
        if not self:
            return
        labels = dict(self._fields["exit_reason"]._description_selection(self.env))
        self.env["behavioral.enrollment.event"].sudo().create([{
            "enrollment_id": enrollment.id, "step_id": enrollment.step_id.id, "kind": "end",
            "reason": labels.get(reason) if reason else self.env._("Completed"),
        } for enrollment in self])
        self.write({
            "state": state,
            "exit_reason": reason,
            "next_due": False,
            "step_id": False,
            "wait_reason": False,
        })
        self.filtered(lambda e: (e.dedupe_key or "").startswith("running:")).write({"dedupe_key": False})

    # ------------------------------------------------------------
    # GOALS
    # ------------------------------------------------------------

    @api.model
    def _get_goal_reached(self, goal, rows):
        """Which rows have reached ``goal``; each goal is a method
        ``_get_goal_reached_<goal>(rows)`` of its own (``models/goals/``).

        :param list rows: (key, partner id, order id or False, since, payload)
        :return dict: {key: id of the order that reached it (or True)}
        """
        method = getattr(self, f"_get_goal_reached_{goal}", None)
        return method(rows) if method and rows else {}

    @api.model
    def _get_goal_orders(self, rows, match):
        """The first confirmed order of each row that ``match`` accepts, in
        one query: the shared body of the goals on orders.

        :param list rows: (key, partner id, order id or None, since, product ids or None)
        :param SQL match: condition on the confirmed order ``so`` (sale_order)
            and the row ``v`` (columns key, partner_id, order_id, since, product_ids)
        :return dict: {key: id of the first order that matches}
        """
        if not rows:
            return {}
        self.env["sale.order"].flush_model(["state", "partner_id", "date_order"])
        values = SQL(", ").join(
            SQL("(%s::int, %s::int, %s::int, %s::timestamp, %s::int[])",
                key, partner_id, order_id or None, since, product_ids)
            for key, partner_id, order_id, since, product_ids in rows
        )
        self.env.cr.execute(SQL(
            """SELECT v.key, min(so.id) FROM (VALUES %s) AS v(key, partner_id, order_id, since, product_ids)
                 JOIN sale_order so ON so.state = 'sale' AND (%s)
                GROUP BY v.key""",
            values, match))
        return dict(self.env.cr.fetchall())

    def _end_on_goal(self, reached):
        """Close these enrollments as converted.

        The order is recorded as the conversion of the enrollments that had
        emailed the customer; that order, when it carries no campaign yet
        (typically the recovered cart itself), is attributed to the sequence's
        UTM campaign so that Odoo's sales reporting counts it too.

        :param dict reached: {enrollment id: order id}, as from _get_goal_reached
        """
        if not self:
            return
        self._end("exited", "goal")
        self.env["behavioral.trace"].flush_model(["enrollment_id", "state"])
        self.env.cr.execute(SQL(
            "SELECT DISTINCT enrollment_id FROM behavioral_trace WHERE state = 'sent' AND enrollment_id IN %s",
            tuple(self.ids)))
        emailed = self.browse(row[0] for row in self.env.cr.fetchall())
        if not emailed:
            return
        rows = SQL(", ").join(SQL("(%s::int, %s::int)", e.id, reached[e.id]) for e in emailed)
        self.env.cr.execute(SQL(
            """UPDATE behavioral_enrollment e SET converted_order_id = v.order_id
                 FROM (VALUES %s) AS v(id, order_id) WHERE e.id = v.id""", rows))
        emailed.invalidate_recordset(["converted_order_id"])
        emailed.modified(["converted_order_id"])  # the stored revenue follows it
        medium = self.env["utm.medium"].sudo()._fetch_or_create_utm_medium("email")
        for sequence in emailed.sequence_id:
            orders = emailed.filtered(lambda e, s=sequence: e.sequence_id == s).converted_order_id.sudo()
            orders.filtered(lambda o: not o.campaign_id).write({
                "campaign_id": sequence.campaign_id.id,
                "medium_id": medium.id,
            })

    @api.model
    def _exit_on_goal_triggers(self, triggers):
        """End the running enrollments that these triggers complete.

        Called when new triggers are evaluated, so that an order placed ends
        the cart series right away rather than at its next due step.
        """
        partners = triggers.partner_id
        if not partners:
            return
        running = self.sudo().search([
            ("state", "=", "running"),
            ("sequence_id.goal", "!=", "none"),
            ("partner_id", "in", partners.ids),
        ])
        running._end_reached_goals()

    # ------------------------------------------------------------
    # TOOLS
    # ------------------------------------------------------------

    def _ensure_order_tokens(self):
        """Give the carts of these enrollments a portal token, in one statement,
        so that their restore links work."""
        orders = self.order_id.sudo()
        missing = orders.filtered(lambda o: not o.access_token)
        if missing:
            self.env.cr.execute(SQL(
                "UPDATE sale_order SET access_token = gen_random_uuid()::text "
                "WHERE id IN %s AND access_token IS NULL", tuple(missing.ids)))
            missing.invalidate_recordset(["access_token"])

    # ------------------------------------------------------------
    # CONTENT (called by email templates and dynamic blocks)
    # ------------------------------------------------------------

    @api.model
    def mail_allowed_qweb_expressions(self):
        # placeholders that users without the template editor right may use
        return super().mail_allowed_qweb_expressions() + (
            "object.partner_first_name",
            "object.partner_id.name",
            "object.company_id.name",
            "object.order_id.name",
            "object.sequence_id.name",
        )

    def _get_recommended_products(self, limit=3):
        """The ``limit`` best products to recommend to this customer now.

        Computed for every enrollment of the batch being rendered at once
        (one set of queries per batch, see ``_compute_recommended_product_ids``).
        """
        self.ensure_one()
        return self.recommended_product_ids[:limit]

    def _get_browsed_products(self, limit=3):
        """The ``limit`` products this customer looked at last and can buy
        now; computed for the whole batch being rendered at once."""
        self.ensure_one()
        return self.browsed_product_ids[:limit]

    def _get_browsed_product_ids(self, days=30, limit=12):
        """{enrollment: [product ids]}: the products each customer viewed
        lately, latest first: those the trigger names (``payload['product_ids']``,
        already sorted out by the trigger kind), else the customer's visits of
        the website; one query per batch."""
        result = {}
        partner_ids = set()
        for enrollment in self:
            payload = enrollment.payload if isinstance(enrollment.payload, dict) else {}
            named = payload.get("product_ids")
            result[enrollment] = [
                pid for pid in named if isinstance(pid, int) and not isinstance(pid, bool)
            ] if isinstance(named, list) else []
            if not result[enrollment]:
                partner_ids.add(enrollment.partner_id.id)
        partner_ids.discard(False)
        if partner_ids:
            self.env["website.track"].flush_model(["visitor_id", "product_id", "visit_datetime"])
            self.env["website.visitor"].flush_model(["partner_id"])
            self.env.cr.execute(SQL(
                """SELECT partner_id, array_agg(product_id ORDER BY last_view DESC)
                     FROM (SELECT visitor.partner_id, track.product_id, max(track.visit_datetime) AS last_view,
                                  row_number() OVER (PARTITION BY visitor.partner_id
                                                     ORDER BY max(track.visit_datetime) DESC) AS rank
                             FROM website_track track
                             JOIN website_visitor visitor ON visitor.id = track.visitor_id
                            WHERE visitor.partner_id = ANY(%s) AND track.product_id IS NOT NULL
                              AND track.visit_datetime >= %s
                            GROUP BY visitor.partner_id, track.product_id) views
                    WHERE rank <= %s
                    GROUP BY partner_id""",
                list(partner_ids), fields.Datetime.now() - timedelta(days=days), limit))
            views = dict(self.env.cr.fetchall())
            for enrollment in self:
                if not result[enrollment]:
                    result[enrollment] = views.get(enrollment.partner_id.id, [])
        return result

    def _get_email_company(self):
        """The company whose name, logo and address the email shows."""
        self.ensure_one()
        return (self.company_id or self.order_id.company_id or self.sequence_id.company_id
                or self.env.company).sudo()

    def _get_email_company_address(self):
        """The company's postal address on one line, for the email footer."""
        self.ensure_one()
        partner = self._get_email_company().partner_id
        lines = partner._display_address(without_company=True).splitlines()
        return ", ".join(line.strip() for line in lines if line.strip())

    def _get_preferences_url(self):
        """Where the customer manages what they receive: their preference
        page, through its signed link (no login needed)."""
        self.ensure_one()
        partner = self.partner_id.sudo()
        if not partner.id:  # a made-up enrollment (content check, preview): the portal page
            return f"{self.sequence_id.get_base_url()}/my/email-preferences"
        return f"{self.sequence_id.get_base_url()}{partner._behavioral_preference_path()}"

    def _get_review_links(self):
        """[(product, url)]: where the customer can review each product of the
        order: the product page's reviews when the shop shows them, else the
        order's portal page, signed so that the customer can post there."""
        self.ensure_one()
        order = self.order_id.sudo()
        lines = order.order_line.filtered(
            lambda line: line.product_id and not line.display_type and not line.is_delivery)
        products = lines.product_id
        reviews = self.env.ref("website_sale.product_comment", raise_if_not_found=False)
        if reviews and reviews.sudo().active:
            base_url = order.get_base_url()
            return [(product, f"{base_url}{product.website_url}#o_product_page_reviews") for product in products]
        if not order.access_token:
            return []
        url = f"{order.get_base_url()}{order._get_share_url(pid=self.partner_id.id)}"
        return [(product, url) for product in products]

    def _get_cart_restore_url(self):
        """Link that restores this enrollment's cart in the shop."""
        self.ensure_one()
        order = self.order_id.sudo()
        if not order or not order.access_token:
            return False
        return f"{order.get_base_url()}/shop/cart?access_token={order.access_token}&revive=merge"

    # ------------------------------------------------------------
    # TIMELINE: what happened to this customer, and why
    # ------------------------------------------------------------

    def _compute_timeline_html(self):
        entries = self._get_timeline()
        for enrollment in self:
            enrollment.timeline_html = self.env["ir.qweb"]._render(
                "behavioral_email.enrollment_timeline",
                {"entries": entries.get(enrollment.id, []), "show_sequence": False})

    def _get_timeline(self):
        """{enrollment id: [entry, ...]}, oldest first, from what the crons
        recorded: the enrollment itself (entered, ended, next step), its
        traces (sent, skipped, canceled, failed) and its logged waits. One
        query per kind of record, whatever the number of enrollments.

        An entry is a dict: date, kind (entered, sent, skipped, canceled,
        failed, waited, ended, next), title, detail, sequence.
        """
        if not self:
            return {}
        Trace = self.env["behavioral.trace"].sudo()
        traces = Trace.search([("enrollment_id", "in", self.ids)])
        events = self.env["behavioral.enrollment.event"].sudo().search([("enrollment_id", "in", self.ids)])
        trigger_labels = dict(self.env["behavioral.trigger"]._fields["trigger_type"]._description_selection(self.env))
        failure_labels = dict(Trace._fields["failure_type"]._description_selection(self.env))
        type_labels = dict(self.env["behavioral.sequence.step"]._fields["step_type"]._description_selection(self.env))
        exit_labels = dict(self._fields["exit_reason"]._description_selection(self.env))
        entries = {enrollment.id: [] for enrollment in self}
        for enrollment in self.sudo():
            trigger = enrollment.trigger_id
            entries[enrollment.id].append({
                "date": enrollment.create_date, "kind": "entered",
                "title": self.env._("Entered"),
                "detail": self.env._("%(trigger)s on %(date)s", trigger=trigger_labels.get(trigger.trigger_type),
                                     date=self._format_datetime(trigger.occurred_at))
                if trigger else False,
                "sequence": enrollment.sequence_id.name,
            })
        titles = {
            "sent": self.env._("Done"), "skipped": self.env._("Skipped"),
            "canceled": self.env._("Skipped (consent)"), "failed": self.env._("Failed"),
        }
        for trace in traces:
            step = trace.step_id
            title = self.env._("Sent") if trace.state == "sent" and "cap" in \
                self.env["behavioral.sequence.step"]._get_cadence_kinds().get(step.step_type, set()) \
                else titles.get(trace.state)
            details = [f"{type_labels.get(step.step_type, '')}: {trace.subject or step.name or ''}"]
            if trace.failure_type:
                details.append(failure_labels.get(trace.failure_type))
            if trace.state_msg and trace.state_msg not in details:
                details.append(trace.state_msg)
            if trace.open_datetime:
                details.append(self.env._("opened %(date)s", date=self._format_datetime(trace.open_datetime)))
            if trace.links_click_datetime:
                details.append(self.env._("clicked %(date)s", date=self._format_datetime(trace.links_click_datetime)))
            entries[trace.enrollment_id.id].append({
                "date": trace.executed_at, "kind": trace.state, "title": title,
                "detail": " · ".join(d for d in details if d), "sequence": trace.sequence_id.name,
            })
        ended = set()
        for event in events:
            enrollment = event.enrollment_id
            if event.kind == "end":
                ended.add(enrollment.id)
                title = self.env._("Exited") if enrollment.state == "exited" else self.env._("Ended")
                if event.reason == self.env._("Completed"):
                    title = self.env._("Completed")
                detail = event.reason
            else:
                title = self.env._("Waited")
                detail = self.env._("until %(date)s: %(reason)s",
                                    date=self._format_datetime(event.until), reason=event.reason or "")
            entries[enrollment.id].append({
                "date": event.date, "kind": "waited" if event.kind == "wait" else "ended",
                "title": title, "detail": detail, "sequence": enrollment.sequence_id.name,
            })
        for enrollment in self.sudo():
            if enrollment.state in ("exited", "done") and enrollment.id not in ended:
                # ended before events were logged, or refused at entry (consent)
                entries[enrollment.id].append({
                    "date": enrollment.last_step_date or enrollment.create_date, "kind": "ended",
                    "title": self.env._("Exited") if enrollment.state == "exited" else self.env._("Completed"),
                    "detail": exit_labels.get(enrollment.exit_reason) or False,
                    "sequence": enrollment.sequence_id.name,
                })
            elif enrollment.state == "running" and enrollment.step_id:
                entries[enrollment.id].append({
                    "date": enrollment.next_due, "kind": "next", "title": self.env._("Next"),
                    "detail": " · ".join(filter(None, [
                        f"{type_labels.get(enrollment.step_id.step_type, '')}: {enrollment.step_id.name or ''}",
                        enrollment.wait_reason])),
                    "sequence": enrollment.sequence_id.name,
                })
        order = {"entered": 0, "waited": 1, "next": 3, "ended": 4}
        for enrollment_id, items in entries.items():
            items.sort(key=lambda e: (e["date"] or fields.Datetime.now(), order.get(e["kind"], 2)))
            for entry in items:
                entry["date_display"] = self._format_datetime(entry["date"])
                entry["badge"] = TIMELINE_BADGES.get(entry["kind"], "text-bg-light")
        return entries

    @api.model
    def _format_datetime(self, value):
        """A datetime in the reader's time zone, as Odoo shows it."""
        if not value:
            return ""
        return format_datetime(self.env, value, dt_format="short")

    # ------------------------------------------------------------
    # CADENCE: the recipient's local time and the frequency cap
    # (rules called by _get_cadence_delays)
    # ------------------------------------------------------------

    def _get_local_time_delays(self, now):
        """Steps outside their send window or inside the company's quiet
        hours, in the recipient's own time zone, wait for the next allowed
        minute. Quiet hours apply to the kinds that reach the customer
        (``_get_cadence_kinds``), not to transactional sequences.

        :return dict: {enrollment id: (UTC datetime, reason)}
        """
        kinds = self.env["behavioral.sequence.step"]._get_cadence_kinds()
        delays = {}
        zones = {}
        for enrollment in self.filtered("step_id"):
            step = enrollment.step_id
            company = enrollment.company_id or enrollment.sequence_id.company_id or self.env.company
            quiet = (company.behavioral_quiet_start, company.behavioral_quiet_end)
            quiet_applies = quiet[0] != quiet[1] and "quiet" in kinds.get(step.step_type, set()) \
                and enrollment.sequence_id.consent_mode != "transactional"
            if not quiet_applies and not step._has_send_window():
                continue
            key = (enrollment.partner_id, company)
            if key not in zones:
                zones[key] = enrollment._get_recipient_timezone(company)
            zone = zones[key]
            local_now = cadence.localize(now, zone)
            when, blocked = cadence.next_allowed_time(
                local_now, window=(step.send_hour_from, step.send_hour_to), weekdays=step._get_weekdays(),
                quiet=quiet if quiet_applies else (0.0, 0.0))
            if not blocked or when is None:
                continue
            if blocked == cadence.BLOCK_QUIET:
                reason = self.env._("Quiet hours %(start)s-%(end)s in the customer's time zone (%(zone)s)",
                                    start=cadence.format_hour(quiet[0]), end=cadence.format_hour(quiet[1]),
                                    zone=zone)
            elif blocked == cadence.BLOCK_WINDOW:
                reason = self.env._("Send window %(start)s-%(end)s in the customer's time zone (%(zone)s)",
                                    start=cadence.format_hour(step.send_hour_from),
                                    end=cadence.format_hour(step.send_hour_to), zone=zone)
            else:
                reason = self.env._("Not a send day of this step in the customer's time zone (%(zone)s)",
                                    zone=zone)
            delays[enrollment.id] = (max(cadence.to_utc(when, zone), now + timedelta(minutes=1)), reason)
        return delays

    def _get_recipient_timezone(self, company):
        """The customer's time zone: their own; else their mobile's or phone's
        (when the number has one zone); else their country's (when it has one
        zone); else the company's; else UTC."""
        self.ensure_one()
        partner = self.partner_id.sudo()
        return cadence.recipient_timezone(
            partner_tz=partner.tz,
            numbers=[number for number in (partner.mobile, partner.phone) if number],
            country_code=partner.country_id.code,
            fallback=company.partner_id.tz,
            region=company.country_id.code,
        )

    @api.model
    def _get_capped_step_types(self):
        """The step kinds the frequency cap applies to (``_get_cadence_kinds``),
        sorted: the marketing messages that wait and count."""
        kinds = self.env["behavioral.sequence.step"]._get_cadence_kinds()
        return sorted(kind for kind, rules in kinds.items() if "cap" in rules)

    @api.model
    def _get_marketing_sent(self, partner_ids, since, aggregate):
        """The marketing messages sent to these customers after ``since``:
        steps of the capped kinds (``_get_capped_step_types``) of sequences
        that are not transactional. One query.

        :param SQL aggregate: aggregate of ``t.executed_at`` (send times)
        :return dict: {partner id: aggregate}, for the customers sent any
        """
        self.env.flush_all()
        self.env.cr.execute(SQL(
            """SELECT t.partner_id, %s
                 FROM behavioral_trace t
                 JOIN behavioral_sequence_step st ON st.id = t.step_id
                 JOIN behavioral_sequence s ON s.id = t.sequence_id
                WHERE t.state = 'sent' AND st.step_type IN %s AND s.consent_mode != 'transactional'
                  AND t.partner_id IN %s AND t.executed_at > %s
                GROUP BY t.partner_id""",
            aggregate, tuple(self._get_capped_step_types()), tuple(partner_ids), since))
        return dict(self.env.cr.fetchall())

    def _get_frequency_cap_delays(self, now):
        """At most ``behavioral_cap_count`` marketing emails per customer in
        ``behavioral_cap_hours`` hours, across all sequences (the company's
        setting; 0 = no cap). Transactional sequences neither count nor wait.
        When the cap binds, the due steps of the most important sequences
        (lowest ``priority``) go first; the others wait until a slot frees.
        One query for the batch.

        :return dict: {enrollment id: (UTC datetime, reason)}
        """
        capped_types = self._get_capped_step_types()
        candidates = self.filtered(
            lambda e: e.step_id.step_type in capped_types and e.sequence_id.consent_mode != "transactional"
            and (e.company_id or e.sequence_id.company_id or self.env.company).behavioral_cap_count > 0)
        if not candidates:
            return {}
        companies = {e.id: e.company_id or e.sequence_id.company_id or self.env.company for e in candidates}
        longest = max(company.behavioral_cap_hours for company in companies.values())
        sent = self._get_marketing_sent(
            candidates.partner_id.ids, now - timedelta(hours=longest),
            SQL("array_agg(t.executed_at ORDER BY t.executed_at)"))
        delays = {}
        by_partner = defaultdict(list)
        for enrollment in candidates:
            by_partner[enrollment.partner_id.id].append(enrollment)
        for partner_id, group in by_partner.items():
            times = list(sent.get(partner_id, []))
            went = []
            group.sort(key=lambda e: (e.sequence_id.priority, e.next_due, e.id))
            for enrollment in group:
                company = companies[enrollment.id]
                count, hours = company.behavioral_cap_count, company.behavioral_cap_hours
                window = sorted(t for t in times if t > now - timedelta(hours=hours))
                if len(window) < count:
                    times.append(now)
                    went.append(enrollment)
                    continue
                free_at = window[len(window) - count] + timedelta(hours=hours)
                reason = self.env._(
                    "Frequency cap: %(count)s marketing emails per %(hours)s hours reached for this customer",
                    count=count, hours=hours)
                if went:
                    reason = self.env._("%(reason)s; %(sequence)s went first (higher priority)",
                                        reason=reason, sequence=went[0].sequence_id.name)
                delays[enrollment.id] = (max(free_at, now + timedelta(minutes=1)), reason)
        return delays


# ----------------------------------------------------------------------
# CUSTOMER PREFERENCES: the customer's frequency and pause in the cadence gate
# ----------------------------------------------------------------------


class BehavioralEnrollmentPreferences(models.Model):
    """The customer's own choices as a rule of the cadence gate: a pause until
    a date, at most one marketing email a week or a month (chosen on the
    preference page, stored on res.partner). A held step waits, it is never
    dropped."""

    _inherit = "behavioral.enrollment"

    def _get_cadence_delays(self, now):
        delays = super()._get_cadence_delays(now)
        return self._merge_delays(delays, self._get_customer_preference_delays(now))

    def _get_customer_preference_delays(self, now):
        """When the due step of these enrollments may run, per their customer's
        choices: a pause until a date, at most one marketing message a week or
        a month across all sequences. Only the step kinds that reach the
        customer and count for the frequency cap (``_get_cadence_kinds``:
        emails, texts) wait and count; transactional sequences are exempt.

        Set-based: one read of the customers, one query for their last
        messages. Within the batch, a customer with a frequency gets one
        message, from their most important sequence (lowest ``priority``);
        the others wait a full period from now.

        :return dict: {enrollment id: (not before datetime, reason)} for the
            enrollments that must wait
        """
        capped_types = self._get_capped_step_types()
        marketing = self.filtered(
            lambda e: e.step_id.step_type in capped_types and e.sequence_id.consent_mode != "transactional")
        if not marketing:
            return {}
        partners = marketing.partner_id
        partners.fetch(["behavioral_frequency", "behavioral_pause_until", "tz"])
        delays = {}
        for enrollment in marketing:
            partner = enrollment.partner_id
            resume = partner._behavioral_get_resume_at()
            if resume and resume > now:
                delays[enrollment.id] = (resume, self.env._(
                    "Paused by the customer until %(date)s", date=partner.behavioral_pause_until))
        periods = self.env["res.partner"]._behavioral_frequency_periods()
        capped = marketing.filtered(
            lambda e: e.id not in delays and e.partner_id.behavioral_frequency in periods)
        if not capped:
            return delays
        last_sent = self._get_marketing_sent(
            capped.partner_id.ids, now - max(periods.values()), SQL("max(t.executed_at)"))
        reasons = {
            "weekly": self.env._("The customer asked for at most one email a week"),
            "monthly": self.env._("The customer asked for at most one email a month"),
        }
        for enrollment in capped.sorted(lambda e: (e.sequence_id.priority, e.next_due, e.id)):
            partner = enrollment.partner_id
            period = periods[partner.behavioral_frequency]
            last = last_sent.get(partner.id)
            if last and last + period > now:
                delays[enrollment.id] = (last + period, reasons[partner.behavioral_frequency])
            else:
                # this one goes: the customer's other enrollments of the batch wait
                last_sent[partner.id] = now
        return delays
