from datetime import timedelta

from odoo import fields, models
from odoo.exceptions import UserError


class BehavioralSequencePreview(models.TransientModel):
    """Who would have entered a sequence over the last days, and how many
    emails each would get: a dry run on real history.

    The triggers of the sequence's kind recorded in the period go through the
    sequence's own enrollment checks (filters, consent, re-entry, goal,
    exclusions) in a savepoint that is rolled back
    (:meth:`behavioral.sequence._dry_run_enroll`): nothing is created, no
    email is queued. For each customer: the emails of this sequence on its
    main path, and those the running sequences sent them in the period.
    """

    _name = "behavioral.sequence.preview"
    _description = "Behavioral Sequence Preview"

    sequence_id = fields.Many2one("behavioral.sequence", required=True, ondelete="cascade")
    days = fields.Integer("Last Days", default=30, required=True)
    line_ids = fields.One2many("behavioral.sequence.preview.line", "preview_id", readonly=True)
    trigger_count = fields.Integer("Triggers", readonly=True)
    entered_count = fields.Integer("Would Enter", readonly=True)
    email_count = fields.Integer("Emails of This Sequence", readonly=True)
    done = fields.Boolean(readonly=True)

    def action_run(self):
        self.ensure_one()
        if self.days <= 0:
            raise UserError(self.env._("Preview at least one day."))
        sequence = self.sequence_id.sudo()
        if not sequence.step_ids:
            raise UserError(self.env._("Add steps to the sequence first."))
        now = fields.Datetime.now()
        triggers = self.env["behavioral.trigger"].sudo().search([
            ("trigger_type", "=", sequence.trigger_type),
            ("occurred_at", ">=", now - timedelta(days=self.days)),
            ("occurred_at", "<=", now),
        ], order="occurred_at, id")
        entered, notes = sequence._dry_run_enroll(triggers) if triggers else ({}, {})
        path_emails = len(sequence._get_default_path().filtered(
            lambda s: "cap" in s._get_cadence_kinds().get(s.step_type, set())))
        others = self._get_other_emails(set(entered.values()), now - timedelta(days=self.days))
        lines = []
        for trigger in triggers:
            would_enter = trigger.id in entered
            lines.append({
                "trigger_id": trigger.id,
                "partner_id": trigger.partner_id.id,
                "occurred_at": trigger.occurred_at,
                "would_enter": would_enter,
                "reason": "\n".join(note.split(": ", 1)[-1] for note in notes.get(trigger.id, [])) or False,
                "email_count": path_emails if would_enter else 0,
                "other_email_count": others.get(trigger.partner_id.id, 0) if would_enter else 0,
            })
        self.line_ids.unlink()
        self.write({
            "line_ids": [fields.Command.create(vals) for vals in lines],
            "trigger_count": len(triggers),
            "entered_count": len(entered),
            "email_count": path_emails * len(entered),
            "done": True,
        })
        return {
            "type": "ir.actions.act_window",
            "res_model": self._name,
            "res_id": self.id,
            "view_mode": "form",
            "target": "new",
            "name": self.env._("Preview of %(sequence)s", sequence=sequence.name),
        }

    def _get_other_emails(self, partner_ids, since):
        """{partner id: emails the running sequences sent them since ``since``}."""
        if not partner_ids:
            return {}
        kinds = self.env["behavioral.sequence.step"]._get_cadence_kinds()
        capped = [kind for kind, rules in kinds.items() if "cap" in rules]
        groups = self.env["behavioral.trace"].sudo()._read_group([
            ("partner_id", "in", list(partner_ids)),
            ("state", "=", "sent"),
            ("executed_at", ">=", since),
            ("step_id.step_type", "in", capped),
            ("sequence_id.state", "=", "running"),
            ("sequence_id", "!=", self.sequence_id.id),
        ], ["partner_id"], ["__count"])
        return {partner.id: count for partner, count in groups}
