import logging
from collections import defaultdict

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from ..tools import is_concurrency_error, process_in_batches, run_isolated

_logger = logging.getLogger(__name__)

EXIT_REASONS = [
    ("goal", "Goal reached"),
    ("blacklisted", "Blocklisted"),
    ("opted_out", "Opted out"),
    ("bounced", "Bounced"),
    ("no_email", "No valid email"),
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
}

# failure type of a canceled trace -> exit reason of its enrollment
CONSENT_EXITS = {
    "mail_bl": "blacklisted",
    "mail_optout": "opted_out",
    "mail_bounce": "bounced",
    "mail_email_missing": "no_email",
    "mail_email_invalid": "no_email",
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
      ``mailing.trace.set_bounced``), or a user stopped it
      (:meth:`action_stop`).
    * ``failed``: a step could not be run (e.g. its template does not render);
      ``state_msg`` holds the error and the step's trace is ``failed``. Set by
      :meth:`_advance` (or :meth:`_advance_safely` for an unexpected error);
      :meth:`action_retry` puts it back to ``running``.
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
    trace_count = fields.Integer(compute="_compute_trace_count")
    cart_restore_url = fields.Char(
        compute="_compute_cart_restore_url",
        help="Link that restores the cart in the shop; for use in email templates.")

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
        failed.write({"state": "running", "next_due": fields.Datetime.now(), "state_msg": False})
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

        return process_in_batches(
            self.env, claim, lambda enrollments: enrollments._advance_safely(), count_remaining)

    # ------------------------------------------------------------
    # ADVANCE
    # ------------------------------------------------------------

    def _advance_safely(self):
        """Advance a claimed batch; one record that cannot advance is marked
        failed with its error, the others go on (see ``run_isolated``)."""
        run_isolated(self, "_advance", lambda enrollment, exc: enrollment.write({
            "state": "failed", "state_msg": self.env._("Unexpected error: %s", exc),
        }))

    def _advance(self):
        """Run the current step of these (due, running) enrollments.

        A fixed number of queries per step present in the batch, whatever the
        number of enrollments: goal check, condition, consent, rendering and
        mail creation are all done for the whole group at once.
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
        with_goal = enrollments.filtered(lambda e: e.sequence_id.goal != "none")
        reached = self._get_goal_reached([
            (e.id, e.partner_id.id, e.order_id.id, e.goal_since) for e in with_goal
        ])
        goal_done = enrollments.filtered(lambda e: e.id in reached)
        goal_done._end_on_goal(reached)
        enrollments -= goal_done

        outcomes = {}  # enrollment id -> trace values
        by_step = defaultdict(list)
        for enrollment in enrollments:
            by_step[enrollment.step_id].append(enrollment.id)
        for step, group_ids in by_step.items():
            group = enrollments.browse(group_ids)
            try:
                with self.env.cr.savepoint():
                    outcomes.update(step._execute(group))
            except Exception as exc:  # noqa: BLE001 - one broken step must not stop the batch
                if is_concurrency_error(exc):
                    raise
                _logger.exception("behavioral_email: step %s failed for %s enrollment(s)", step.id, len(group))
                for enrollment in group:
                    outcomes[enrollment.id] = {
                        "state": "failed", "failure_type": "unknown",
                        "state_msg": self.env._("Unexpected error: %s", exc),
                    }
        self._record_outcomes(enrollments, outcomes)

    def _record_outcomes(self, enrollments, outcomes):
        """Write the traces of a batch and move each enrollment on."""
        now = fields.Datetime.now()
        Trace = self.env["behavioral.trace"].sudo()
        # a failed trace is reused on retry: still one trace per (enrollment, step)
        previous = Trace.search([
            ("enrollment_id", "in", enrollments.ids), ("state", "=", "failed"),
        ])
        previous_map = {(t.enrollment_id.id, t.step_id.id): t for t in previous}
        create_vals = []
        for enrollment in enrollments:
            vals = dict(TRACE_DEFAULTS, **outcomes[enrollment.id], executed_at=now)
            trace = previous_map.get((enrollment.id, enrollment.step_id.id))
            if trace:
                trace.write(vals)
            else:
                create_vals.append(dict(
                    vals, enrollment_id=enrollment.id, step_id=enrollment.step_id.id))
        Trace.create(create_vals)

        # move enrollments, one write per distinct outcome
        moves = defaultdict(list)
        for enrollment in enrollments:
            outcome = outcomes[enrollment.id]
            if outcome["state"] in ("sent", "skipped"):
                key = ("next", enrollment.step_id)
            elif outcome["state"] == "canceled":
                key = ("exit", CONSENT_EXITS.get(outcome.get("failure_type"), "no_email"))
            else:
                key = ("failed", outcome.get("state_msg"))
            moves[key].append(enrollment.id)
        for (kind, value), group_ids in moves.items():
            group = enrollments.browse(group_ids)
            if kind == "next":
                next_step = value._get_next_step()
                if next_step:
                    group.write({
                        "step_id": next_step.id,
                        "next_due": now + next_step._get_delay(),
                        "last_step_date": now,
                    })
                else:
                    group.write({"last_step_date": now})
                    group._end("done")
            elif kind == "exit":
                group.write({"last_step_date": now})
                group._end("exited", value)
            else:
                group.write({"state": "failed", "state_msg": value})
        enrollments._schedule_advance()

    def _end(self, state, reason=False):
        """Close enrollments; the 'not_running' re-entry key is released."""
        if not self:
            return
        self.write({
            "state": state,
            "exit_reason": reason,
            "next_due": False,
            "step_id": False,
        })
        self.filtered(lambda e: (e.dedupe_key or "").startswith("running:")).write({"dedupe_key": False})

    # ------------------------------------------------------------
    # GOALS
    # ------------------------------------------------------------

    @api.model
    def _get_goal_reached(self, rows):
        """Which rows have reached the 'order placed' goal.

        :param list rows: (key, partner id, order id or False, since) tuples
        :return dict: {key: id of the first qualifying order} for the keys whose
            order (cart) is confirmed, or whose customer confirmed another order
            at or after ``since``
        """
        rows = [row for row in rows if row[1]]
        if not rows:
            return {}
        self.env["sale.order"].flush_model(["state", "partner_id", "date_order"])
        values = SQL(", ").join(
            SQL("(%s::int, %s::int, %s::int, %s::timestamp)", key, partner_id, order_id or None, since)
            for key, partner_id, order_id, since in rows
        )
        self.env.cr.execute(SQL(
            """SELECT v.key, min(so.id) FROM (VALUES %s) AS v(key, partner_id, order_id, since)
                 JOIN sale_order so
                   ON so.state = 'sale'
                  AND (so.id = v.order_id OR (so.partner_id = v.partner_id AND so.date_order >= v.since))
                GROUP BY v.key""",
            values))
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
        orders = triggers.filtered(lambda t: t.trigger_type == "order_confirmed")
        if not orders:
            return
        running = self.sudo().search([
            ("state", "=", "running"),
            ("sequence_id.goal", "=", "order_confirmed"),
            ("partner_id", "in", orders.partner_id.ids),
        ])
        reached = self._get_goal_reached([
            (e.id, e.partner_id.id, e.order_id.id, e.goal_since) for e in running
        ])
        running.filtered(lambda e: e.id in reached)._end_on_goal(reached)

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

    def _get_cart_restore_url(self):
        """Link that restores this enrollment's cart in the shop."""
        self.ensure_one()
        order = self.order_id.sudo()
        if not order or not order.access_token:
            return False
        return f"{order.get_base_url()}/shop/cart?access_token={order.access_token}&revive=merge"
