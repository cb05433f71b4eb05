import hashlib
import hmac
import json
import logging
import secrets

import requests
from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from odoo import api, fields, models
from odoo.exceptions import ValidationError

_logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Behavioral-Signature"
DELIVERY_HEADER = "X-Behavioral-Delivery"
MAX_RESPONSE_CHARS = 500

DEFAULT_WEBHOOK_BODY = """{
  "event": "behavioral_step",
  "sequence": {{ sequence.name|tojson }},
  "step": {{ step.name|tojson }},
  "customer": {"id": {{ customer.id }}, "name": {{ customer.name|tojson }}, "email": {{ customer.email|tojson }}},
  "order": {{ order.name|tojson }},
  "amount_total": {{ order.amount_total|tojson }}
}"""

# what a template sees when it is checked on save
SAMPLE_DATA = {
    "enrollment": {"id": 1, "state": "running", "payload": {"website_id": 1, "amount_total": 92.5}},
    "sequence": {"id": 1, "name": "Abandoned cart recovery"},
    "step": {"id": 1, "name": "Notify the CRM"},
    "customer": {
        "id": 7, "name": "Alice Customer", "email": "alice@example.com", "phone": "+32 470 12 34 56",
        "mobile": "+32 470 12 34 56", "lang": "en_US", "country_code": "BE", "tz": "Europe/Brussels",
    },
    "order": {
        "id": 42, "name": "S00042", "amount_total": 92.5, "amount_untaxed": 92.5, "currency": "EUR",
        "state": "draft", "lines": [{"product": "Olive Tree", "quantity": 1.0, "price_total": 80.0}],
    },
    "source": {"model": "sale.order", "id": 42},
    "now": "2026-03-02T09:00:00",
}


def _sandbox():
    """Jinja2, sandboxed: marketer-written templates see plain data only, no
    record and no attribute beginning with an underscore."""
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class BehavioralSequenceStep(models.Model):
    """Step kind ``webhook``: a signed JSON ``POST`` to another system.

    The body is a sandboxed Jinja2 template of the enrollment's data (plain
    values, see :meth:`_get_webhook_data`), checked when the step is saved:
    it must parse, render on sample data and give valid JSON. Each request
    carries an HMAC-SHA256 of the body under the step's secret
    (``X-Behavioral-Signature: sha256=<hex>``) and a delivery id the receiver
    can deduplicate on (``X-Behavioral-Delivery``).

    Outcomes: a 2xx answer is ``sent``; a 5xx answer, a timeout or a refused
    connection is ``retry`` (the enrollment retries later with backoff, never
    sleeping in the cron, and fails once the retries are spent); any other
    answer (4xx, a redirect) is a permanent ``failed`` with failure type
    ``webhook_rejected``. The response code is kept on the trace
    (``webhook_status``).
    """

    _inherit = "behavioral.sequence.step"

    step_type = fields.Selection(selection_add=[("webhook", "Webhook")], ondelete={"webhook": "cascade"})
    webhook_url = fields.Char("URL", help="Receives a POST with the JSON body below.")
    webhook_body = fields.Text(
        "JSON Body", default=DEFAULT_WEBHOOK_BODY,
        help="A Jinja2 template giving JSON. Available: enrollment, sequence, step, customer, "
             "order, source, now. Use the tojson filter for text values.")
    webhook_secret = fields.Char(
        "Signing Secret", copy=False, groups="behavioral_email.group_behavioral_manager",
        default=lambda self: secrets.token_hex(24),
        help="The body is signed with HMAC-SHA256 under this secret (header X-Behavioral-Signature).")
    webhook_timeout = fields.Integer(
        "Timeout (seconds)", default=10,
        help="A request that takes longer is retried later.")

    @api.constrains("step_type", "webhook_body", "webhook_url", "webhook_timeout")
    def _check_webhook(self):
        for step in self.filtered(lambda s: s.step_type == "webhook"):
            if step.webhook_url and not step.webhook_url.startswith(("http://", "https://")):
                raise ValidationError(self.env._("The webhook URL must start with http:// or https://."))
            if not 1 <= step.webhook_timeout <= 60:
                raise ValidationError(self.env._("The webhook timeout must be between 1 and 60 seconds."))
            problem = step._get_webhook_template_problem()
            if problem:
                raise ValidationError(self.env._(
                    "The JSON body of step %(step)s is refused: %(problem)s",
                    step=step.display_name, problem=problem))

    def _get_webhook_template_problem(self):
        """Why the body template is unusable (a sentence), or False: syntax,
        a render with sample data, and JSON validity of the result."""
        self.ensure_one()
        try:
            template = _sandbox().from_string(self.webhook_body or "")
            rendered = template.render(SAMPLE_DATA)
        except TemplateError as exc:
            return self.env._("template error: %(error)s", error=exc)
        except Exception as exc:  # noqa: BLE001 - any render error is the template's
            return self.env._("the template fails on sample data: %(error)s", error=exc)
        try:
            json.loads(rendered)
        except ValueError as exc:
            return self.env._("the result is not valid JSON: %(error)s", error=exc)
        return False

    def _get_content_problem(self):
        if self.step_type != "webhook":
            return super()._get_content_problem()
        if not self.webhook_url:
            return self.env._("has no URL.")
        return self._get_webhook_template_problem()

    # ------------------------------------------------------------
    # EXECUTION
    # ------------------------------------------------------------

    def _run_webhook(self, enrollments):
        """Render every body, then post them one by one on one HTTP session."""
        outcomes = {}
        step = self.sudo()
        template = _sandbox().from_string(step.webhook_body or "")
        secret = (step.webhook_secret or "").encode()
        data = self._get_webhook_data(enrollments)
        with requests.Session() as session:
            for enrollment in enrollments:
                try:
                    body = template.render(data[enrollment.id])
                    json.loads(body)
                except Exception as exc:  # noqa: BLE001 - recorded on that trace
                    outcomes[enrollment.id] = {
                        "state": "failed", "failure_type": "render",
                        "state_msg": self.env._("The webhook body could not be rendered: %(error)s",
                                                error=self._describe_error(exc)),
                    }
                    continue
                payload = body.encode()
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: "sha256=" + hmac.new(secret, payload, hashlib.sha256).hexdigest(),
                    DELIVERY_HEADER: f"{enrollment.id}-{self.id}",
                }
                outcomes[enrollment.id] = self._post_webhook(session, payload, headers)
        return outcomes

    def _post_webhook(self, session, payload, headers):
        """One request, as an outcome."""
        try:
            response = session.post(
                self.webhook_url, data=payload, headers=headers,
                timeout=self.webhook_timeout, allow_redirects=False)
        except requests.Timeout:
            return {"state": "retry", "failure_type": "webhook_timeout", "webhook_status": 0,
                    "state_msg": self.env._("No answer within %(seconds)s seconds.", seconds=self.webhook_timeout)}
        except requests.RequestException as exc:
            return {"state": "retry", "failure_type": "webhook_timeout", "webhook_status": 0,
                    "state_msg": self.env._("Connection failed: %(error)s", error=self._describe_error(exc))}
        status = response.status_code
        answer = (response.text or "")[:MAX_RESPONSE_CHARS]
        if 200 <= status < 300:
            return {"state": "sent", "webhook_status": status, "state_msg": answer or False}
        if status >= 500:
            return {"state": "retry", "failure_type": "webhook_server", "webhook_status": status,
                    "state_msg": self.env._("The server answered %(status)s: %(answer)s",
                                            status=status, answer=answer)}
        return {"state": "failed", "failure_type": "webhook_rejected", "webhook_status": status,
                "state_msg": self.env._("The server refused the call (%(status)s): %(answer)s",
                                        status=status, answer=answer)}

    def _get_webhook_data(self, enrollments):
        """{enrollment id: plain data for the template}, read in batch; no
        record reaches the template."""
        enrollments = enrollments.sudo()
        now = fields.Datetime.now().isoformat()
        data = {}
        for enrollment in enrollments:
            partner = enrollment.partner_id
            order = enrollment.order_id
            data[enrollment.id] = {
                "enrollment": {"id": enrollment.id, "state": enrollment.state,
                               "payload": enrollment.payload or {}},
                "sequence": {"id": enrollment.sequence_id.id, "name": enrollment.sequence_id.name},
                "step": {"id": self.id, "name": self.name},
                "customer": {
                    "id": partner.id, "name": partner.name, "email": partner.email or None,
                    "phone": partner.phone or None, "mobile": partner.mobile or None,
                    "lang": partner.lang or None, "country_code": partner.country_id.code or None,
                    "tz": partner.tz or None,
                },
                "order": {
                    "id": order.id or None, "name": order.name or None,
                    "amount_total": order.amount_total if order else None,
                    "amount_untaxed": order.amount_untaxed if order else None,
                    "currency": order.currency_id.name or None, "state": order.state or None,
                    "lines": [{"product": line.product_id.display_name, "quantity": line.product_uom_qty,
                               "price_total": line.price_total}
                              for line in order.order_line if line.product_id and not line.display_type],
                },
                "source": {"model": enrollment.res_model, "id": enrollment.res_id},
                "now": now,
            }
        return data


class BehavioralTrace(models.Model):
    _inherit = "behavioral.trace"

    failure_type = fields.Selection(selection_add=[
        ("webhook_timeout", "Webhook unreachable"),
        ("webhook_server", "Webhook server error"),
        ("webhook_rejected", "Webhook refused"),
    ], ondelete={
        "webhook_timeout": "set null", "webhook_server": "set null", "webhook_rejected": "set null",
    })
    webhook_status = fields.Integer("Response Code", readonly=True, help="HTTP status the webhook answered.")
