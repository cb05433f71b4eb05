from odoo import api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL

# the kinds that share this file's settings, payload and enrollment rules
ENGAGEMENT_KINDS = ("email_opened", "email_clicked", "email_not_opened")
ENGAGEMENT_SETTINGS = ["engagement_step_id", "engagement_mailing_id", "engagement_include_own"]


class BehavioralTrigger(models.Model):
    """What the email engagement kinds (``email_opened``, ``email_clicked``,
    ``email_not_opened``) share: the customer behind a mailing trace, the
    trigger rows built from traces, and the rule that keeps a sequence from
    feeding on its own emails.

    The source document of these triggers is the ``mailing.trace``: any
    marketing email, a mass mailing as well as a sequence's own email (each
    sequence step sends through a technical mailing).
    """

    _inherit = "behavioral.trigger"

    @api.model
    def _is_kind_running(self, kind):
        """Whether a running sequence listens to ``kind`` (one indexed query).

        Opens and clicks of every mass mailing go through the capture hooks:
        without a sequence to feed they are not recorded at all.
        """
        return bool(self.env["behavioral.sequence"].sudo().search_count(
            [("state", "=", "running"), ("trigger_type", "=", kind)], limit=1))

    @api.model
    def _sql_engagement_insert(self, kind, where, occurred_at, key_suffix=None, payload=None):
        """One ``INSERT ... SELECT`` of ``kind`` triggers, one per mailing trace
        matching ``where`` (SQL on alias ``mt``).

        The customer is the enrollment's for a sequence email, the recipient
        for a mailing on contacts, and otherwise (mailing lists, leads...) the
        oldest contact with the trace's address. Public partners and traces
        without any matching contact give no trigger.

        :param SQL occurred_at: when the signal happened (may use ``mt``)
        :param SQL key_suffix: appended to the dedupe key ``<kind>:<trace id>``
        :param SQL payload: more ``jsonb_build_object`` arguments
        :return list: ids of the inserted triggers
        """
        public = tuple(self._get_public_partner_ids()) or (0,)
        extra_key = SQL("|| ':' || %s", key_suffix) if key_suffix is not None else SQL("")
        extra_payload = SQL(", %s", payload) if payload is not None else SQL("")
        self.env.cr.execute(SQL(
            """
            INSERT INTO behavioral_trigger
                (trigger_type, partner_id, res_model, res_id, occurred_at, payload,
                 dedupe_key, company_id, state, create_uid, create_date, write_uid, write_date)
            SELECT %(kind)s, customer.id, 'mailing.trace', mt.id, %(occurred_at)s,
                   jsonb_build_object(
                       'trace_id', mt.id,
                       'mailing_id', mt.mass_mailing_id,
                       'step_id', step.id,
                       'sequence_id', step.sequence_id,
                       'subject', COALESCE(bt.subject, mailing.subject)
                       %(extra_payload)s),
                   %(kind)s || ':' || mt.id %(extra_key)s,
                   enrollment.company_id, %(common)s
              FROM mailing_trace mt
              JOIN mailing_mailing mailing ON mailing.id = mt.mass_mailing_id
              LEFT JOIN behavioral_sequence_step step ON step.mailing_id = mt.mass_mailing_id
              LEFT JOIN behavioral_enrollment enrollment
                     ON mt.model = 'behavioral.enrollment' AND enrollment.id = mt.res_id
              LEFT JOIN behavioral_trace bt ON bt.mailing_trace_id = mt.id
              JOIN LATERAL (
                  SELECT partner.id FROM res_partner partner
                   WHERE partner.id = CASE mt.model
                                          WHEN 'behavioral.enrollment' THEN enrollment.partner_id
                                          WHEN 'res.partner' THEN mt.res_id
                                      END
                   UNION ALL
                  (SELECT partner.id FROM res_partner partner
                    WHERE mt.model NOT IN ('behavioral.enrollment', 'res.partner')
                      AND partner.email_normalized = mt.email
                      AND partner.active
                    ORDER BY partner.id LIMIT 1)
                   LIMIT 1
              ) customer ON TRUE
             WHERE mt.trace_type = 'mail'
               AND customer.id NOT IN %(public)s
               AND (%(where)s)
            ON CONFLICT (dedupe_key) DO NOTHING
            RETURNING id
            """,
            kind=kind, occurred_at=occurred_at, extra_payload=extra_payload, extra_key=extra_key,
            common=self._prepare_detected_values(), public=public, where=where,
        ))
        return [row[0] for row in self.env.cr.fetchall()]

    @api.model
    def _capture_email_engagement(self, kind, traces, payload=None):
        """Record ``kind`` for these traces, now; nothing when no running
        sequence listens to it. One statement for the whole set."""
        if not traces or not self._is_kind_running(kind):
            return []
        self.env.flush_all()  # callers flush first (mailing.trace._behavioral_capturing): a no-op then
        ids = self._sql_engagement_insert(
            kind, SQL("mt.id IN %s", tuple(traces.ids)), SQL("%s", fields.Datetime.now()), payload=payload)
        if ids:
            self._trigger_enroll_cron()
        return ids

    def _filter_email_engagement(self, sequence, refuse):
        """The triggers ``sequence`` accepts, by the email they are about.

        With a chosen step or mailing, only that email counts (others are
        not this sequence's business: no note). Without, any email counts
        except the sequence's own, unless it includes them explicitly: a
        sequence reacting to its own emails would enroll its customers again
        and again.
        """
        wanted = (sequence.engagement_step_id.mailing_id or sequence.engagement_mailing_id).id
        accepted = []
        for trigger in self:
            payload = trigger.payload or {}
            if wanted:
                if payload.get("mailing_id") == wanted:
                    accepted.append(trigger.id)
            elif payload.get("sequence_id") == sequence.id and not sequence.engagement_include_own:
                refuse(trigger, self.env._("an email of this sequence itself"))
            else:
                accepted.append(trigger.id)
        return self.browse(accepted)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    engagement_step_id = fields.Many2one(
        "behavioral.sequence.step", string="Sequence Email", ondelete="restrict",
        domain="[('step_type', '=', 'email')]",
        help="Only this email of a sequence counts. Leave empty (and no mailing) for any marketing email.")
    engagement_mailing_id = fields.Many2one(
        "mailing.mailing", string="Mailing", ondelete="restrict",
        domain="[('use_in_behavioral', '=', False), ('mailing_type', '=', 'mail')]",
        help="Only this mass mailing counts. Leave empty (and no sequence email) for any marketing email.")
    engagement_include_own = fields.Boolean(
        "Include Own Emails",
        help="Also react to the emails this sequence sends itself. Off by default: a sequence "
             "triggered by its own emails would keep enrolling the same customers.")

    def unlink(self):
        # a sequence may react to one of its own emails: let its steps go
        self.filtered("engagement_step_id").engagement_step_id = False
        return super().unlink()

    @api.constrains("engagement_step_id", "engagement_mailing_id")
    def _check_engagement_email(self):
        for sequence in self:
            if sequence.engagement_step_id and sequence.engagement_mailing_id:
                raise ValidationError(self.env._(
                    "Sequence %(name)s: choose either a sequence email or a mailing, not both.",
                    name=sequence.name))


class BehavioralSequenceStep(models.Model):
    _inherit = "behavioral.sequence.step"

    @api.ondelete(at_uninstall=False)
    def _unlink_except_watched_by_a_sequence(self):
        """An email whose opens or clicks start another sequence stays until
        that sequence watches another one (a sequence watching its own email
        lets it go: ``behavioral.sequence.unlink``)."""
        watchers = self.env["behavioral.sequence"].with_context(active_test=False).search([
            ("engagement_step_id", "in", self.ids),
        ])
        if watchers:
            watcher = watchers[0]
            raise UserError(self.env._(
                "The email “%(step)s” starts the sequence “%(sequence)s”: choose another email "
                "there, or delete that sequence, first.",
                step=watcher.engagement_step_id.display_name, sequence=watcher.name))
