import json
import logging
from datetime import timedelta

from psycopg2.extras import Json

from odoo import api, fields, models
from odoo.tools import SQL

from ..tools import BatchWork, is_concurrency_error, process_in_batches, run_isolated

_logger = logging.getLogger(__name__)

class BehavioralTrigger(models.Model):
    """A captured signal: something a customer did, or stopped doing.

    Rows are written by capture hooks (in the customer's own transaction) and
    by detection crons (absences such as an idle cart). Each row carries a
    ``dedupe_key`` made unique by the database, so that a capture repeated or
    a detection run twice adds nothing.

    Trigger kinds are an extension point, one file per kind under
    ``models/triggers/``, the way payment providers plug into
    ``payment.provider``. A kind:

    * adds itself to ``trigger_type`` with ``selection_add``;
    * declares itself in :meth:`_get_trigger_kinds` (source model, default
      goal, the sequence fields its form shows);
    * is captured by an ORM override on its source model that calls
      :meth:`_insert_triggers`, or detected by ``_detect_<kind>(now)``: one
      set-based ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``, run by
      :meth:`_cron_detect` only while a sequence of that kind runs;
    * may refine enrollment with ``_filter_<kind>(sequence, triggers, refuse)``
      (returns the triggers the sequence accepts; ``refuse(trigger, reason)``
      notes a refusal) and add its own settings to ``behavioral.sequence``.

    States (``state``):

    * ``new``: captured, not yet evaluated; set at insert
      (:meth:`_insert_triggers`).
    * ``done``: evaluated against every running sequence by
      :meth:`_cron_enroll` (``enrollment_count`` says how many followed;
      ``state_msg`` says why a sequence refused it).
    * ``error``: evaluation crashed even alone; ``state_msg`` holds the error.
      Set by :meth:`_enroll_safely`, one trigger at a time: the rest of the
      batch goes on and the queue never stalls on it.
    """

    _name = "behavioral.trigger"
    _description = "Behavioral Trigger"
    _order = "occurred_at desc, id desc"
    _rec_name = "trigger_type"

    trigger_type = fields.Selection([], required=True, index=True, readonly=True)
    partner_id = fields.Many2one(
        "res.partner", string="Customer", index=True, ondelete="cascade", readonly=True)
    res_model = fields.Char("Source Model", required=True, readonly=True)
    res_id = fields.Many2oneReference("Source ID", model_field="res_model", readonly=True)
    occurred_at = fields.Datetime(
        "Occurred On", required=True, index=True, readonly=True,
        help="When the signal happened. For an abandoned cart: when it became "
             "abandoned (last change plus the idle threshold).")
    payload = fields.Json(readonly=True)
    payload_display = fields.Text("Payload (JSON)", compute="_compute_payload_display")
    dedupe_key = fields.Char(required=True, readonly=True, copy=False)
    state = fields.Selection(
        [("new", "New"), ("done", "Processed"), ("error", "Error")],
        default="new", required=True, index=True, readonly=True)
    state_msg = fields.Text("Processing Notes", readonly=True)
    company_id = fields.Many2one("res.company", index=True, readonly=True)
    enrollment_ids = fields.One2many("behavioral.enrollment", "trigger_id", readonly=True)
    enrollment_count = fields.Integer(compute="_compute_enrollment_count")

    _sql_constraints = [
        ("dedupe_key_unique", "UNIQUE(dedupe_key)",
         "A trigger with the same key was already captured."),
    ]

    def init(self):
        # The enrollment cron reads new triggers in id order: keep that cheap
        # however large the history grows.
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS behavioral_trigger_new_idx "
            "ON behavioral_trigger (id) WHERE state = 'new'"))

    @api.depends("payload")
    def _compute_payload_display(self):
        for trigger in self:
            trigger.payload_display = json.dumps(trigger.payload or {}, indent=2, sort_keys=True)

    def _compute_enrollment_count(self):
        counts = dict(self.env["behavioral.enrollment"]._read_group(
            [("trigger_id", "in", self.ids)], ["trigger_id"], ["__count"]))
        for trigger in self:
            trigger.enrollment_count = counts.get(trigger, 0)

    @api.depends("trigger_type", "res_model", "res_id")
    def _compute_display_name(self):
        labels = dict(self._fields["trigger_type"]._description_selection(self.env))
        for trigger in self:
            trigger.display_name = f"{labels.get(trigger.trigger_type, '')} ({trigger.res_model},{trigger.res_id})"

    # ------------------------------------------------------------
    # CAPTURE
    # ------------------------------------------------------------

    @api.model
    def _insert_triggers(self, vals_list):
        """Insert trigger rows, silently skipping those whose key exists.

        Used by capture hooks: one statement, no ORM overhead, and no error
        when the same signal is captured twice.

        :param list vals_list: dicts with trigger_type, partner_id, res_model,
            res_id, occurred_at, dedupe_key and optionally payload, company_id
        :return: ids of the rows actually inserted
        """
        if not vals_list:
            return []
        now = fields.Datetime.now()
        uid = self.env.uid
        rows = [SQL(
            "(%s, %s, %s, %s, %s, %s, %s, 'new', %s, %s, %s, %s, %s)",
            vals["trigger_type"], vals.get("partner_id") or None, vals["res_model"], vals["res_id"],
            vals["occurred_at"], Json(vals.get("payload") or {}), vals["dedupe_key"],
            vals.get("company_id") or None, uid, now, uid, now,
        ) for vals in vals_list]
        self.env.cr.execute(SQL(
            """INSERT INTO behavioral_trigger
                   (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                    dedupe_key, state, company_id, create_uid, create_date, write_uid, write_date)
               VALUES %s
               ON CONFLICT (dedupe_key) DO NOTHING
               RETURNING id""",
            SQL(", ").join(rows),
        ))
        ids = [row[0] for row in self.env.cr.fetchall()]
        if ids:
            self._trigger_enroll_cron()
        return ids

    @api.model
    def _trigger_enroll_cron(self, at=None):
        cron = self.env.ref("behavioral_email.ir_cron_behavioral_enroll", raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger(at=at)

    # ------------------------------------------------------------
    # DETECTION
    # ------------------------------------------------------------

    @api.model
    def _cron_detect(self):
        """Detect absences in bulk and record them as triggers.

        Runs ``_detect_<kind>(now)`` for every kind that has a running
        sequence; each is one set-based statement (or one per setting), and a
        rerun adds nothing thanks to the unique ``dedupe_key``. A kind whose
        detection fails is logged and the others go on.
        """
        now = fields.Datetime.now()
        created = []
        for kind in self._get_detectable_kinds():
            created += self._detect_kind(kind, now)
        if created:
            self._trigger_enroll_cron()
        return created

    @api.model
    def _get_detectable_kinds(self):
        """Running kinds that are detected (they have ``_detect_<kind>``)."""
        return [kind for kind in self._get_running_kinds() if hasattr(self, f"_detect_{kind}")]

    @api.model
    def _detect_kind(self, kind, now):
        """Run the detection of one kind, in a savepoint.

        :return list: ids of the triggers inserted; empty when the detection
            failed (logged; concurrency errors are raised for a retry)
        """
        try:
            with self.env.cr.savepoint():
                ids = getattr(self, f"_detect_{kind}")(now)
        except Exception as exc:
            if is_concurrency_error(exc):
                raise
            _logger.exception("behavioral_email: detection of %s failed", kind)
            return []
        _logger.info("behavioral_email: %s %s trigger(s) detected", len(ids), kind)
        return ids

    @api.model
    def _get_running_kinds(self):
        """Trigger kinds that at least one running sequence listens to."""
        groups = self.env["behavioral.sequence"].sudo()._read_group(
            [("state", "=", "running")], ["trigger_type"])
        return [kind for (kind,) in groups]

    @api.model
    def _get_trigger_kinds(self):
        """Declarations of the trigger kinds, extended by each kind's file.

        :return dict: {kind: {
            'model': model of the source document (str),
            'goal': default goal of a new sequence of this kind (str),
            'settings': sequence fields the form shows for this kind (list),
        }}
        """
        return {}

    @api.model
    def _get_kind_info(self, kind):
        return self._get_trigger_kinds().get(kind) or {}

    @api.model
    def _prepare_detected_values(self):
        """SQL of the columns every detection INSERT fills the same way."""
        return SQL("'new', %s, %s, %s, %s", self.env.uid, fields.Datetime.now(),
                   self.env.uid, fields.Datetime.now())

    @api.model
    def _get_detection_windows(self, kind, get_settings):
        """The settings the running sequences of ``kind`` detect with, each
        with the longest entry window of the sequences that use it: one
        detection per setting serves them all.

        :param get_settings: function of a sequence returning the settings
            (hashable) it detects with, a list
        :return dict: {settings: entry window in hours}
        """
        windows = {}
        for sequence in self.env["behavioral.sequence"].sudo().search([
            ("state", "=", "running"), ("trigger_type", "=", kind),
        ]):
            for settings in get_settings(sequence):
                windows[settings] = max(windows.get(settings, 0), sequence.entry_window_hours)
        return windows

    @api.model
    def _get_public_partner_ids(self):
        """Partners of the websites' public users: never a customer."""
        return self.env["website"].sudo().search([]).user_id.partner_id.ids  # pylint: disable=no-search-all

    # ------------------------------------------------------------
    # ENROLLMENT
    # ------------------------------------------------------------

    def _mark_done(self, notes):
        """Close these triggers in one statement, each with its own notes."""
        if not self:
            return
        self.env.flush_all()
        rows = SQL(", ").join(
            SQL("(%s, %s)", trigger_id, "\n".join(msgs) or None)
            for trigger_id, msgs in notes.items()
        )
        self.env.cr.execute(SQL(
            """UPDATE behavioral_trigger t
                  SET state = 'done', state_msg = v.msg, write_date = %s, write_uid = %s
                 FROM (VALUES %s) AS v(id, msg)
                WHERE t.id = v.id""",
            fields.Datetime.now(), self.env.uid, rows))
        self.invalidate_recordset(["state", "state_msg", "write_date", "write_uid"])

    @api.model
    def _cron_enroll(self):
        """Evaluate new triggers against the running sequences, in batches.

        Rows are claimed with ``FOR UPDATE SKIP LOCKED`` so that several cron
        workers share the queue without evaluating a trigger twice.
        """
        work = self._get_enroll_work()
        return process_in_batches(self.env, work.claim, work.process, work.count_remaining)

    @api.model
    def _get_enroll_work(self):
        """The enrollment cron's batch: claim new triggers, evaluate them."""
        batch_size = int(self.env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.enroll_batch_size", 500)) or 500

        def claim():
            self.env.flush_all()
            self.env.cr.execute(SQL(
                """SELECT id FROM behavioral_trigger
                    WHERE state = 'new' ORDER BY id LIMIT %s
                    FOR UPDATE SKIP LOCKED""", batch_size))
            ids = [row[0] for row in self.env.cr.fetchall()]
            return self.browse(ids), len(ids) == batch_size

        def count_remaining():
            self.env.cr.execute(SQL("SELECT count(*) FROM behavioral_trigger WHERE state = 'new'"))
            return self.env.cr.fetchone()[0]

        return BatchWork(claim, lambda triggers: triggers._enroll_safely(), count_remaining, batch_size)

    def _enroll_safely(self):
        """Evaluate a claimed batch; a trigger that cannot be evaluated is
        marked ``error`` with its message, the others go on."""
        run_isolated(self, "_enroll", lambda trigger, exc: trigger.write({
            "state": "error", "state_msg": self.env._("Unexpected error: %s", exc),
        }))

    def _enroll(self):
        """Evaluate these triggers against every running sequence."""
        notes = {trigger.id: [] for trigger in self}
        sequences = self.env["behavioral.sequence"].sudo().search([("state", "=", "running")])
        enrollments = self.env["behavioral.enrollment"]
        # Goal-type triggers end the enrollments they complete, before any new
        # enrollment is considered.
        self.env["behavioral.enrollment"]._exit_on_goal_triggers(self)
        for sequence in sequences:
            candidates = self.filtered(lambda t, s=sequence: t.trigger_type == s.trigger_type)
            if not candidates:
                continue
            try:
                with self.env.cr.savepoint():
                    enrollments |= sequence._enroll_triggers(candidates, notes)
            except Exception as exc:  # noqa: BLE001 - one sequence must not block the others
                if is_concurrency_error(exc):
                    raise
                _logger.exception("behavioral_email: enrollment failed for sequence %s", sequence.id)
                for trigger in candidates:
                    notes[trigger.id].append(self.env._("%(sequence)s: error: %(error)s",
                                               sequence=sequence.name, error=exc))
        self._mark_done(notes)
        enrollments._schedule_advance()
        return enrollments

    # ------------------------------------------------------------
    # RETENTION
    # ------------------------------------------------------------

    @api.model
    def _cron_gc(self):
        """The daily clean-up of personal data past its retention period:
        processed triggers (:meth:`_gc_triggers`), then the copies of the
        emails sent (``behavioral.trace._gc_bodies``).

        :return int: the number of triggers deleted
        """
        deleted = self._gc_triggers()
        self.env["behavioral.trace"]._gc_bodies()
        return deleted

    @api.model
    def _gc_triggers(self):
        """Delete processed triggers past the retention period, in batches.

        Raw signals are personal data: they are kept only as long as needed
        (``behavioral_email.trigger_retention_days``, 180 by default).
        Enrollments keep their own copy of what they need.
        """
        params = self.env["ir.config_parameter"].sudo()
        days = int(params.get_param("behavioral_email.trigger_retention_days", 180))
        if days <= 0:
            return 0
        limit = fields.Datetime.now() - timedelta(days=days)
        batch_size = 1000

        def claim():
            self.env.cr.execute(SQL(
                """SELECT id FROM behavioral_trigger
                    WHERE state != 'new' AND occurred_at < %s
                    ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED""", limit, batch_size))
            ids = [row[0] for row in self.env.cr.fetchall()]
            return self.browse(ids), len(ids) == batch_size

        def count_remaining():
            self.env.cr.execute(SQL(
                "SELECT count(*) FROM behavioral_trigger WHERE state != 'new' AND occurred_at < %s", limit))
            return self.env.cr.fetchone()[0]

        return process_in_batches(self.env, claim, lambda triggers: triggers.unlink(), count_remaining)

    # ------------------------------------------------------------
    # TOOLS
    # ------------------------------------------------------------

    def _get_order_id(self):
        """The sale.order this trigger is about, if any (id, or False)."""
        self.ensure_one()
        if self.res_model == "sale.order":
            return self.res_id
        return (self.payload or {}).get("order_id") or False

    def _get_goal_since(self):
        """Orders confirmed from this moment on count as reaching the goal.

        A kind may put ``goal_since`` in its payload (a cart: its last change,
        so that an order placed after the customer left the cart completes it,
        even one placed before the cart was detected as abandoned).
        """
        self.ensure_one()
        since = (self.payload or {}).get("goal_since")
        if since:
            return fields.Datetime.to_datetime(since[:19].replace("T", " "))
        return self.occurred_at
