import json
import logging
import math

from odoo import http
from odoo.exceptions import ValidationError
from odoo.http import request

_logger = logging.getLogger(__name__)

# bytes of a posted event at most, unless behavioral_email.event_max_bytes says otherwise
DEFAULT_MAX_BYTES = 16 * 1024


def _reject_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _parse_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


class BehavioralEventController(http.Controller):
    """Events sent by other systems (``custom_event`` triggers).

    ``POST /behavioral_email/v1/events`` with an Odoo API key of a user of the
    Behavioral Email groups (``Authorization: Bearer <key>``) and a JSON body::

        {"event": "trial_started", "email": "ann@example.com",
         "properties": {"plan": "pro"}, "occurred_at": "2026-03-02T09:00:00Z",
         "idempotency_key": "crm-4711"}

    (``partner_id`` instead of ``email`` names a known contact). Answers:
    202 ``{"id": trigger id, "duplicate": bool}``; 400 or 413 with
    ``{"error": code, "message": text}`` for bad input, which stores nothing;
    401 without a valid key; 403 for a user outside the groups; 429 past the
    rate limit (``behavioral_email.event_rate_limit`` events a minute per API
    user, with a ``Retry-After`` header).
    """

    @http.route("/behavioral_email/v1/events", type="http", auth="bearer", methods=["POST"],
                csrf=False, save_session=False)
    def post_event(self, **_kwargs):
        env = request.env
        if not env.user.has_group("behavioral_email.group_behavioral_user"):
            return self._error(403, "forbidden", env._("This API key's user may not send events."))
        Trigger = env["behavioral.trigger"]
        if Trigger._is_custom_event_rate_limited():
            return self._error(429, "rate_limited", env._("Too many events: retry in a minute."),
                               headers=[("Retry-After", "60")])
        max_bytes = int(env["ir.config_parameter"].sudo().get_param(
            "behavioral_email.event_max_bytes", DEFAULT_MAX_BYTES)) or DEFAULT_MAX_BYTES
        length = request.httprequest.content_length
        if length is not None and length > max_bytes:
            return self._error(413, "too_large", env._(
                "The event is larger than %(max)s bytes.", max=max_bytes))
        body = request.httprequest.get_data(cache=False)
        if len(body) > max_bytes:
            return self._error(413, "too_large", env._(
                "The event is larger than %(max)s bytes.", max=max_bytes))
        try:
            data = json.loads(body, parse_constant=_reject_constant, parse_float=_parse_float)
        except (ValueError, RecursionError) as exc:
            return self._error(400, "invalid_json", env._("The body is not valid JSON: %(error)s", error=exc))
        try:
            trigger, created = Trigger._receive_custom_event(data)
        except ValidationError as exc:
            return self._error(400, "invalid_event", str(exc))
        return self._json(202, {"id": trigger.id, "duplicate": not created})

    @staticmethod
    def _json(status, data, headers=None):
        # ASCII JSON: Content-Length then counts bytes and characters alike
        return request.make_response(
            json.dumps(data), headers=[("Content-Type", "application/json"), *(headers or [])], status=status)

    def _error(self, status, code, message, headers=None):
        return self._json(status, {"error": code, "message": message}, headers=headers)
