import logging

from odoo import api, fields, models
from odoo.tools import SQL

try:
    import phonenumbers
except ImportError:  # pragma: no cover - declared in the manifest
    phonenumbers = None

_logger = logging.getLogger(__name__)

# number types that can receive a text message
MOBILE_TYPES = (
    (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE)
    if phonenumbers else ()
)


class BehavioralSequenceStep(models.Model):
    """Step kind ``sms``: a text message queued in Odoo's SMS queue
    (``sms.sms``, sent by the sms module's own cron through IAP).

    The number is the customer's mobile (or their phone when it is a mobile
    number), normalized to E.164 with phonenumbers, read in the customer's
    country (else the company's). At send time, for marketing sequences,
    numbers in the phone blocklist (``phone.blacklist``) and customers opted
    out of the sequence's topics are skipped; a customer without a valid
    mobile number gets nothing. Each of these cancels the step with a failure
    type (``sms_number_missing``, ``sms_number_format``, ``sms_blacklist``,
    ``mail_optout``) and ends the enrollment, as a missing consent does for
    email.
    """

    _inherit = "behavioral.sequence.step"

    step_type = fields.Selection(selection_add=[("sms", "SMS")], ondelete={"sms": "cascade"})
    sms_body = fields.Text(
        "SMS Text", translate=True,
        help="The message; placeholders such as {{ object.partner_id.name }} are filled in for "
             "each customer (object is the enrollment).")

    @api.model
    def _get_cadence_kinds(self):
        kinds = super()._get_cadence_kinds()
        kinds["sms"] = {"quiet"}
        return kinds

    @api.model
    def _get_message_kinds(self):
        # a text message reaches the customer: the holdout group skips it
        return super()._get_message_kinds() | {"sms"}

    def _get_content_problem(self):
        if self.step_type != "sms":
            return super()._get_content_problem()
        if not (self.sms_body or "").strip():
            return self.env._("has no text.")
        return False

    # ------------------------------------------------------------
    # EXECUTION
    # ------------------------------------------------------------

    def _run_sms(self, enrollments):
        """Normalize the numbers, check the blocklist and opt-outs for the
        whole group, render the texts in one pass and queue the SMS in one
        ``create``."""
        outcomes = {}
        labels = dict(self.env["behavioral.trace"]._fields["failure_type"]._description_selection(self.env))

        def cancel(enrollment, failure, exit_reason):
            outcomes[enrollment.id] = {
                "state": "canceled", "failure_type": failure, "exit_reason": exit_reason,
                "state_msg": labels.get(failure),
            }

        numbers = {}
        for enrollment in enrollments:
            number, failure = self._get_sms_number(enrollment.partner_id)
            if failure:
                cancel(enrollment, failure, "no_phone")
            else:
                numbers[enrollment.id] = number
        pending = enrollments.filtered(lambda e: e.id in numbers)
        sequence = self.sequence_id
        if pending and sequence.consent_mode != "transactional":
            blocked = self._get_blocklisted_numbers(set(numbers.values()))
            consent = sequence._get_consent_failures(pending.partner_id)
            for enrollment in pending:
                if numbers[enrollment.id] in blocked:
                    cancel(enrollment, "sms_blacklist", "blacklisted")
                elif consent.get(enrollment.partner_id.id) == "mail_optout":
                    cancel(enrollment, "mail_optout", "opted_out")
        pending = enrollments.filtered(lambda e: e.id in numbers and e.id not in outcomes)
        if not pending:
            return outcomes
        try:
            texts = self.env["mail.render.mixin"].sudo().with_context(lang=None)._render_template(
                self.sms_body or "", "behavioral.enrollment", pending.ids, engine="inline_template")
        except Exception as exc:  # noqa: BLE001 - recorded on every trace of the group
            error = self.env._("The SMS could not be rendered: %(error)s", error=self._describe_error(exc))
            for enrollment in pending:
                outcomes[enrollment.id] = {"state": "failed", "failure_type": "render", "state_msg": error}
            return outcomes
        sms_records = self.env["sms.sms"].sudo().create([{
            "number": numbers[enrollment.id],
            "body": texts[enrollment.id],
            "partner_id": enrollment.partner_id.id,
            "state": "outgoing",
        } for enrollment in pending])
        for enrollment, sms in zip(pending, sms_records):
            outcomes[enrollment.id] = {
                "state": "sent", "sms_id": sms.id, "sms_number": sms.number,
                "subject": (texts[enrollment.id] or "")[:80],
            }
        cron = self.env.ref("sms.ir_cron_sms_scheduler_action", raise_if_not_found=False)
        if cron:
            cron.sudo()._trigger()
        return outcomes

    @api.model
    def _get_sms_number(self, partner):
        """(E.164 number, False) for the partner's mobile, or (False, failure type)."""
        partner = partner.sudo()
        candidates = [(partner.mobile, False), (partner.phone, True)]
        if not any(number for number, _check in candidates):
            return False, "sms_number_missing"
        if phonenumbers is None:
            return False, "sms_number_format"
        region = partner.country_id.code or self.env.company.country_id.code or None
        for number, must_be_mobile in candidates:
            if not number:
                continue
            try:
                parsed = phonenumbers.parse(number, region)
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(parsed):
                continue
            if must_be_mobile and phonenumbers.number_type(parsed) not in MOBILE_TYPES:
                continue
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164), False
        return False, "sms_number_format"

    @api.model
    def _get_blocklisted_numbers(self, numbers):
        """The numbers in the active phone blocklist, one query."""
        if not numbers:
            return set()
        self.env["phone.blacklist"].flush_model(["number", "active"])
        self.env.cr.execute(SQL(
            "SELECT number FROM phone_blacklist WHERE active AND number IN %s", tuple(numbers)))
        return {row[0] for row in self.env.cr.fetchall()}


class BehavioralTrace(models.Model):
    _inherit = "behavioral.trace"

    failure_type = fields.Selection(selection_add=[
        ("sms_number_missing", "Missing mobile number"),
        ("sms_number_format", "Invalid mobile number"),
        ("sms_blacklist", "Phone blocklisted"),
    ], ondelete={
        "sms_number_missing": "set null", "sms_number_format": "set null", "sms_blacklist": "set null",
    })
    sms_id = fields.Many2one("sms.sms", string="SMS", ondelete="set null", readonly=True, index="btree_not_null")
    sms_number = fields.Char("Mobile Number", readonly=True, help="The number the SMS was queued for (E.164).")


class BehavioralEnrollment(models.Model):
    _inherit = "behavioral.enrollment"

    exit_reason = fields.Selection(
        selection_add=[("no_phone", "No valid mobile number")], ondelete={"no_phone": "set null"})
