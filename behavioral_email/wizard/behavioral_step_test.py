from contextlib import closing

from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import email_normalize, email_split

TEST_PREFIX = "[TEST] "


class BehavioralStepTest(models.TransientModel):
    """Send a test of an email step to an address of the marketer's choice,
    rendered with a chosen customer's data.

    The customer's latest enrollment in the sequence is used when there is
    one; otherwise an enrollment is built from their latest source document
    (their latest order for an order or cart sequence, the contact itself for
    a contact sequence) inside a savepoint that is rolled back once the email
    is rendered. The test email is a plain ``mail.mail`` with a "[TEST]"
    subject: no trace, no mailing trace, no tracked link, so it never counts
    in any statistic.
    """

    _name = "behavioral.step.test"
    _description = "Send a Test of a Sequence Step"

    step_id = fields.Many2one("behavioral.sequence.step", required=True, ondelete="cascade")
    sequence_id = fields.Many2one(related="step_id.sequence_id")
    partner_id = fields.Many2one(
        "res.partner", string="Customer", required=True,
        help="The email is rendered with this customer's data (their cart, order...).")
    email_to = fields.Char(
        "Send To", required=True, default=lambda self: self.env.user.email,
        help="The test goes to this address, never to the customer.")
    enrollment_id = fields.Many2one(
        "behavioral.enrollment", compute="_compute_enrollment_id",
        help="The customer's enrollment whose data is used; empty: built from their latest document.")

    @api.depends("partner_id", "step_id")
    def _compute_enrollment_id(self):
        for wizard in self:
            wizard.enrollment_id = self.env["behavioral.enrollment"].search([
                ("sequence_id", "=", wizard.step_id.sequence_id.id),
                ("partner_id", "=", wizard.partner_id.id),
            ], limit=1) if wizard.partner_id and wizard.step_id else False

    def action_send(self):
        self.ensure_one()
        step = self.step_id
        if step.step_type != "email":
            raise UserError(self.env._("Only email steps can be sent as a test."))
        emails = email_split(self.email_to or "")
        if not emails or not all(email_normalize(e) for e in emails):
            raise UserError(self.env._("Enter a valid address to send the test to."))
        subject, body = self._render()
        mailing = step.mailing_id.sudo()
        self.env["mail.mail"].sudo().create({
            "subject": TEST_PREFIX + subject,
            "body_html": body,
            "email_from": mailing.email_from,
            "reply_to": mailing.reply_to or mailing.email_from,
            "email_to": ", ".join(emails),
            "auto_delete": True,
            "is_notification": True,
            "mail_server_id": mailing.mail_server_id.id,
        })
        self.env.ref("mail.ir_cron_mail_scheduler_action").sudo()._trigger()
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {
                "type": "success",
                "message": self.env._("Test email queued for %(emails)s.", emails=", ".join(emails)),
                "next": {"type": "ir.actions.act_window_close"},
            },
        }

    def _render(self):
        """(subject, body) of the step for the chosen customer."""
        step = self.step_id
        if self.enrollment_id:
            return self._render_for(self.enrollment_id)
        with closing(self.env.cr.savepoint()):
            enrollment = self.env["behavioral.enrollment"].sudo().create(self._prepare_enrollment_values())
            result = self._render_for(enrollment)
        self.env.invalidate_all()
        step.invalidate_recordset()
        return result

    def _render_for(self, enrollment):
        step = self.step_id.sudo()
        enrollment._ensure_order_tokens()
        rendered, errors = step._render_batch(enrollment)
        if errors:
            raise UserError(errors[enrollment.id])
        values = rendered[enrollment.id]
        return values["subject"], step._wrap_body(values["body"], values.get("preview"), step._get_mail_styles())

    def _prepare_enrollment_values(self):
        """An enrollment-like record for a customer who never entered."""
        sequence = self.step_id.sequence_id
        model = sequence.source_model
        partner = self.partner_id
        if model == "res.partner":
            source = partner
        else:
            Source = self.env[model].sudo()
            source = Source.search([("partner_id", "=", partner.id)], order="id desc", limit=1) \
                if "partner_id" in Source._fields else Source
        return {
            "sequence_id": sequence.id,
            "partner_id": partner.id,
            "res_model": model,
            "res_id": source.id or 0,
            "order_id": source.id if source._name == "sale.order" else False,
            "state": "exited",
            "exit_reason": "manual",
            "company_id": (sequence.company_id or self.env.company).id,
            "payload": {},
        }
