import json
import math
import re
import uuid
from datetime import datetime, timedelta, timezone

from odoo import api, fields, models
from odoo.exceptions import ValidationError
from odoo.tools import SQL, email_normalize
from odoo.tools.mail import parse_contact_from_email

# event names: what a sequence listens to, typed by people and by programs
EVENT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
IDEMPOTENCY_KEY_MAX = 128
# an event a few minutes "in the future" is a clock difference, not a plan
CLOCK_SKEW = timedelta(minutes=5)
# nesting of the properties at most
MAX_DEPTH = 32
API_FIELDS = {"event", "email", "partner_id", "properties", "occurred_at", "idempotency_key"}
# characters of a property an email shows at most
PROPERTY_TEXT_MAX = 200


def _json_problem(value):
    """What keeps ``value`` from being stored as JSON in PostgreSQL, or None.

    Iterative, so that a deeply nested value cannot exhaust the stack.
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)) and depth >= MAX_DEPTH:
            return "too deeply nested"
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    return "a key is not a text"
                stack += [(key, depth + 1), (sub, depth + 1)]
        elif isinstance(item, (list, tuple)):
            stack += [(sub, depth + 1) for sub in item]
        elif isinstance(item, str):
            if "\x00" in item:
                return "a text holds a NUL character"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a text is not valid Unicode"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return "a number is not finite"
        elif item is not None and not isinstance(item, (bool, int)):
            return f"{type(item).__name__} is not a JSON type"
    return None


def _json_equal(value, expected):
    """JSON equality: 1 equals 1.0, but true is not 1 (as in JSON, unlike Python)."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    return value == expected


class BehavioralTrigger(models.Model):
    """``custom_event``: an event sent by another system or another addon.

    Received by ``POST /behavioral_email/v1/events`` (``controllers/events.py``,
    authenticated with an API key) or from Python with
    :meth:`_capture_custom_event`. The event is about a customer (the source
    document is the contact); its name and properties are kept in the payload
    (``event``, ``properties``), and sequences choose the event name and may
    require property values (``_filter_custom_event``).

    One trigger per event; an event sent again with the same idempotency key
    adds nothing and answers the first one's id.
    """

    _inherit = "behavioral.trigger"

    trigger_type = fields.Selection(
        selection_add=[("custom_event", "Custom event")], ondelete={"custom_event": "cascade"})

    def init(self):
        super().init()
        # the API's rate limit counts the recent events of one API user
        self.env.cr.execute(SQL(
            "CREATE INDEX IF NOT EXISTS behavioral_trigger_custom_event_rate_idx "
            "ON behavioral_trigger (create_uid, create_date) WHERE trigger_type = 'custom_event'"))

    @api.model
    def _get_trigger_kinds(self):
        kinds = super()._get_trigger_kinds()
        kinds["custom_event"] = {
            "model": "res.partner",
            "goal": "none",
            "settings": ["custom_event_name", "custom_event_filter"],
        }
        return kinds

    # ------------------------------------------------------------
    # CAPTURE (Python API)
    # ------------------------------------------------------------

    @api.model
    def _capture_custom_event(self, event, partner, properties, occurred_at=None, idempotency_key=None):
        """Record that ``event`` happened for ``partner``.

        For other addons: ``env["behavioral.trigger"]._capture_custom_event(
        "trial_started", partner, {"plan": "pro"})``. Sequences listening to
        that event name (and whose property filter matches) enroll the
        customer at the next enrollment run.

        :param str event: event name (letters, digits, ``_ . : -``; 64 at most)
        :param partner: the res.partner the event is about (not a public user)
        :param dict properties: JSON-serializable details, kept in the payload
        :param datetime occurred_at: when it happened (UTC); now by default
        :param str idempotency_key: the same key again adds nothing
        :return: the trigger (the existing one for a known idempotency key)
        :raise ValidationError: on invalid input; nothing is stored then
        """
        self._check_custom_event(event, properties, occurred_at, idempotency_key)
        self._check_custom_event_partner(partner)
        key = f"custom_event:{idempotency_key}" if idempotency_key else f"custom_event:{uuid.uuid4().hex}"
        trigger_ids = self._insert_triggers([{
            "trigger_type": "custom_event",
            "partner_id": partner.id,
            "res_model": "res.partner",
            "res_id": partner.id,
            "occurred_at": occurred_at or fields.Datetime.now(),
            "dedupe_key": key,
            "company_id": (partner.company_id or self.env.company).id,
            "payload": {"event": event, "properties": properties or {}},
        }])
        if trigger_ids:
            return self.browse(trigger_ids)
        return self.sudo().search([("dedupe_key", "=", key)], limit=1).with_env(self.env)

    @api.model
    def _check_custom_event_partner(self, partner):
        _ = self.env._
        if not isinstance(partner, models.BaseModel) or partner._name != "res.partner" \
                or len(partner) != 1 or not partner.exists():
            raise ValidationError(_("The event must be about exactly one existing contact."))
        if partner.id in self._get_public_partner_ids() or partner.sudo().is_public:
            raise ValidationError(_("The public user is not a customer: no event for it."))

    @api.model
    def _check_custom_event(self, event, properties, occurred_at, idempotency_key):
        _ = self.env._
        if not isinstance(event, str) or not EVENT_NAME_RE.match(event):
            raise ValidationError(_(
                "The event name must be 1 to 64 letters, digits or “_ . : -”, starting with a "
                "letter or a digit."))
        if properties is not None and not isinstance(properties, dict):
            raise ValidationError(_("The properties must be a JSON object."))
        problem = _json_problem(properties or {})
        if problem:
            raise ValidationError(_("The properties must be JSON: %(problem)s.", problem=problem))
        if occurred_at is not None:
            if not isinstance(occurred_at, datetime) or occurred_at.tzinfo is not None:
                raise ValidationError(_("The event date must be a naive UTC datetime."))
            if occurred_at > fields.Datetime.now() + CLOCK_SKEW:
                raise ValidationError(_("The event date is in the future."))
        if idempotency_key is not None and (
                not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= IDEMPOTENCY_KEY_MAX
                or not idempotency_key.isprintable()):
            raise ValidationError(_(
                "The idempotency key must be a text of 1 to %(max)s printable characters.",
                max=IDEMPOTENCY_KEY_MAX))

    # ------------------------------------------------------------
    # CAPTURE (HTTP API)
    # ------------------------------------------------------------

    @api.model
    def _receive_custom_event(self, data):
        """Validate an event posted to the API and record it.

        The API user's own idempotency keys are kept apart from other users'
        (and from the Python API's), so that two systems cannot collide.

        :param data: the decoded JSON body
        :return tuple: (trigger, created: bool)
        :raise ValidationError: with a message for the caller; nothing stored
        """
        _ = self.env._
        if not isinstance(data, dict):
            raise ValidationError(_("The body must be a JSON object."))
        unknown = sorted(set(data) - API_FIELDS)
        if unknown:
            raise ValidationError(_("Unknown field(s): %(fields)s.", fields=", ".join(unknown)))
        if "event" not in data:
            raise ValidationError(_("The field “event” is required."))
        if "properties" in data and not isinstance(data["properties"], dict):
            raise ValidationError(_("The properties must be a JSON object."))
        key = data.get("idempotency_key")
        if key is not None and (not isinstance(key, str) or not 0 < len(key) <= IDEMPOTENCY_KEY_MAX):
            raise ValidationError(_(
                "The idempotency key must be a text of 1 to %(max)s printable characters.",
                max=IDEMPOTENCY_KEY_MAX))
        occurred_at = self._parse_event_date(data.get("occurred_at"))
        partner, create_vals = self._get_custom_event_partner(data.get("email"), data.get("partner_id"))
        scoped_key = f"api:{self.env.uid}:{key}" if key else None
        properties = data.get("properties") or {}
        # everything is checked before a contact is created: bad input stores nothing
        self._check_custom_event(data["event"], properties, occurred_at, scoped_key)
        if scoped_key:
            existing = self.sudo().search([("dedupe_key", "=", f"custom_event:{scoped_key}")], limit=1)
            if existing:
                return existing, False
        if create_vals:
            partner = self.env["res.partner"].sudo().with_context(behavioral_no_capture=True).create(create_vals)
        trigger = self._capture_custom_event(
            data["event"], partner, properties, occurred_at=occurred_at, idempotency_key=scoped_key)
        return trigger, True

    @api.model
    def _parse_event_date(self, value):
        """ISO 8601 text to a naive UTC datetime (None when not given)."""
        if value is None:
            return None
        if not isinstance(value, str):
            raise ValidationError(self.env._("The event date (occurred_at) must be an ISO 8601 text."))
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError as exc:
            raise ValidationError(self.env._(
                "The event date (occurred_at) is not an ISO 8601 date: %(value)s", value=value[:64])) from exc
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        return parsed.replace(microsecond=0)

    @api.model
    def _get_custom_event_partner(self, email, partner_id):
        """The contact an API event is about, among those of the API user's
        companies (or shared); never a public user.

        :return tuple: (partner, create values): the found partner and None,
            or an empty recordset and the values of the contact to create
        """
        _ = self.env._
        Partner = self.env["res.partner"].sudo()
        if (email is None) == (partner_id is None):
            raise ValidationError(_("Give either “email” or “partner_id”."))
        companies = [False, *self.env.user.company_ids.ids]
        public = set(self._get_public_partner_ids()) | set(
            self.env.ref("base.public_user").sudo().with_context(active_test=False).partner_id.ids)
        if partner_id is not None:
            if isinstance(partner_id, bool) or not isinstance(partner_id, int) or not 0 < partner_id < 2 ** 31:
                raise ValidationError(_("“partner_id” must be a positive integer."))
            partner = Partner.with_context(active_test=False).search(
                [("id", "=", partner_id), ("company_id", "in", companies)])
            if not partner or partner.id in public:
                raise ValidationError(_("Unknown contact: %(id)s.", id=partner_id))
            return partner, None
        normalized = email_normalize(email) if (
            isinstance(email, str) and len(email) <= 254 and email.isprintable()) else False
        if not normalized:
            raise ValidationError(_("“email” is not a valid email address."))
        partner = Partner.search([
            ("email_normalized", "=", normalized), ("company_id", "in", companies),
            ("id", "not in", list(public)),
        ], order="id", limit=1)
        if partner:
            return partner, None
        name, address = parse_contact_from_email(email)
        return Partner, {
            "name": name or address or normalized,
            "email": address or normalized,
            "behavioral_event_created": True,
        }

    @api.model
    def _is_custom_event_rate_limited(self):
        """Whether the current API user sent too many events lately
        (``behavioral_email.event_rate_limit`` a minute; 0 for no limit).

        Counted in the database, so that the limit holds across workers.
        """
        limit = int(self.env["ir.config_parameter"].sudo().get_param("behavioral_email.event_rate_limit", 600))
        if limit <= 0:
            return False
        self.env.cr.execute(SQL(
            """SELECT count(*) FROM (
                   SELECT 1 FROM behavioral_trigger
                    WHERE trigger_type = 'custom_event' AND create_uid = %s AND create_date > %s
                    LIMIT %s) AS recent""",
            self.env.uid, fields.Datetime.now() - timedelta(minutes=1), limit))
        return self.env.cr.fetchone()[0] >= limit

    # ------------------------------------------------------------
    # ENROLLMENT
    # ------------------------------------------------------------

    def _filter_custom_event(self, sequence, refuse):
        """Events of another name are not this sequence's business (no
        note); events of its name must carry the property values it asks for."""
        expected = sequence._get_custom_event_filter()
        accepted_ids = []
        for trigger in self:
            payload = trigger.payload or {}
            if payload.get("event") != sequence.custom_event_name:
                continue
            properties = payload.get("properties") or {}
            mismatch = next((name for name, value in expected.items()
                             if name not in properties or not _json_equal(properties[name], value)), None)
            if mismatch is not None:
                refuse(trigger, self.env._("property “%(name)s” does not match the filter", name=mismatch))
                continue
            accepted_ids.append(trigger.id)
        return self.browse(accepted_ids)


class BehavioralSequence(models.Model):
    _inherit = "behavioral.sequence"

    custom_event_name = fields.Char(
        "Event",
        help="Name of the event this sequence listens to, as other systems send it "
             "(e.g. trial_started).")
    custom_event_filter = fields.Char(
        "Event Properties",
        help='Only events whose properties have these values enroll: a JSON object, '
             'e.g. {"plan": "pro", "trial": true}. Leave empty for every event of that name.')

    @api.constrains("trigger_type", "custom_event_name", "custom_event_filter")
    def _check_custom_event_settings(self):
        for sequence in self.filtered(lambda s: s.trigger_type == "custom_event"):
            if not sequence.custom_event_name or not EVENT_NAME_RE.match(sequence.custom_event_name):
                raise ValidationError(self.env._(
                    "Sequence %(name)s: choose the event it listens to (1 to 64 letters, digits "
                    "or “_ . : -”).", name=sequence.name))
            sequence._get_custom_event_filter()

    def _get_custom_event_filter(self):
        """The property filter as a dict ({} when empty).

        :raise ValidationError: when it is not a JSON object
        """
        self.ensure_one()
        if not (self.custom_event_filter or "").strip():
            return {}
        try:
            value = json.loads(self.custom_event_filter)
        except ValueError as exc:
            raise ValidationError(self.env._(
                "Sequence %(name)s: the event properties filter is not valid JSON: %(error)s",
                name=self.name, error=exc)) from exc
        if not isinstance(value, dict):
            raise ValidationError(self.env._(
                'Sequence %(name)s: the event properties filter must be a JSON object, e.g. {"plan": "pro"}.',
                name=self.name))
        return value


class BehavioralEnrollment(models.Model):
    _inherit = "behavioral.enrollment"

    def _get_event_property(self, name, default=False):
        """A property of the event that started this enrollment, as text for
        an email, e.g. ``<t t-out="object._get_event_property('plan')">your</t>``.

        Only plain values are shown: a text (control characters removed, cut
        to :data:`PROPERTY_TEXT_MAX` characters) or a number. Anything else (a
        missing property, an object, a list, true or false, an empty text)
        gives ``default``, so that the placeholder's own text shows. ``t-out``
        escapes what is shown: a property cannot add HTML to the email.
        """
        self.ensure_one()
        payload = self.payload if isinstance(self.payload, dict) else {}
        properties = payload.get("properties")
        value = properties.get(name) if isinstance(properties, dict) else None
        if isinstance(value, bool) or value is None:
            return default
        if isinstance(value, int):
            return str(value)
        if isinstance(value, float):
            return str(int(value)) if value.is_integer() else f"{value:g}"
        if isinstance(value, str):
            text = " ".join("".join(char if char.isprintable() else " " for char in value).split())
            return text[:PROPERTY_TEXT_MAX] or default
        return default


class ResPartner(models.Model):
    _inherit = "res.partner"

    behavioral_event_created = fields.Boolean(
        "Created by an Event", readonly=True, copy=False,
        help="This contact was created when another system sent an event about an "
             "email address the database did not know.")
