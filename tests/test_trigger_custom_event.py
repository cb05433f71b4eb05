"""Trigger kind ``custom_event``: events other systems post to
``/behavioral_email/v1/events`` with an API key, or other addons record
with ``behavioral.trigger._capture_custom_event``."""
import json
from datetime import timedelta

from freezegun import freeze_time
from lxml import html

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import ValidationError
from odoo.tests.common import HttpCase, tagged

from .common import NOW, BehavioralCommon

URL = "/behavioral_email/v1/events"


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestCustomEvent(HttpCase, BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.api_user = mail_new_test_user(
            cls.env, login="events_api", name="Events API", email="events.api@example.com",
            groups="base.group_user,behavioral_email.group_behavioral_user")
        cls.api_key = cls.env["res.users.apikeys"].with_user(cls.api_user).sudo()._generate(None, "events", None)
        cls.employee = mail_new_test_user(
            cls.env, login="events_employee", name="Plain Employee", email="employee@example.com",
            groups="base.group_user")
        cls.employee_key = cls.env["res.users.apikeys"].with_user(cls.employee).sudo()._generate(
            None, "events", None)
        cls.sequence = cls.env["behavioral.sequence"].create({
            "name": "Trial onboarding",
            "trigger_type": "custom_event",
            "custom_event_name": "trial_started",
            "custom_event_filter": '{"plan": "pro"}',
            "step_ids": [(0, 0, {
                "delay_value": 0,
                "delay_unit": "days",
                "subject": "Your {{ object.payload['properties']['plan'] }} trial has started",
                "body_html": "<p>Hi <t t-out=\"object.partner_id.name\"/>, your trial of "
                             "<t t-out=\"object.payload['properties']['plan']\"/> is ready.</p>",
            })],
        })
        cls.env["ir.config_parameter"].sudo().set_param("behavioral_email.event_rate_limit", 600)

    # ------------------------------------------------------------
    # HELPERS
    # ------------------------------------------------------------

    def post(self, body, key=None, raw=None, at=NOW):
        """POST an event as another system does; returns the response."""
        headers = {"Content-Type": "application/json"}
        if key is not False:
            headers["Authorization"] = f"Bearer {key or self.api_key}"
        data = raw if raw is not None else json.dumps(body)
        with freeze_time(at):
            return self.url_open(URL, data=data, headers=headers)

    def counts(self):
        return (self.env["behavioral.trigger"].search_count([("trigger_type", "=", "custom_event")]),
                self.env["res.partner"].with_context(active_test=False).search_count([]))

    def event(self, **values):
        return dict({"event": "trial_started", "email": "alice@example.com", "properties": {"plan": "pro"},
                     "occurred_at": NOW.isoformat() + "Z"}, **values)

    # ------------------------------------------------------------
    # TESTS
    # ------------------------------------------------------------

    def test_posted_event_enrolls_and_sends(self):
        self.start(self.sequence)
        response = self.post(self.event(idempotency_key="crm-1"))
        self.assertEqual(response.status_code, 202, response.text)
        trigger = self.env["behavioral.trigger"].browse(response.json()["id"])
        self.assertFalse(response.json()["duplicate"])
        self.assertRecordValues(trigger, [{
            "trigger_type": "custom_event", "partner_id": self.alice.id, "res_model": "res.partner",
            "res_id": self.alice.id, "occurred_at": NOW, "state": "new", "create_uid": self.api_user.id,
            "company_id": self.env.company.id,
        }])
        self.assertEqual(trigger.payload, {"event": "trial_started", "properties": {"plan": "pro"}})

        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        mail = self.assertQueued(self.alice, sequence=self.sequence)
        self.assertEqual(mail.subject, "Your pro trial has started")
        self.assertIn("Hi Alice Customer, your trial of pro is ready.", mail.body_html)
        self.assertEqual(len(self._new_mails), 1)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=2))
            self.run_crons(NOW + timedelta(days=1))
        self.assertFalse(self._new_mails, "rerunning the crons adds nothing")
        self.assertEqual(self.enrollments(self.sequence).state, "done")

    def test_shipped_trial_onboarding(self):
        """The shipped "Trial onboarding": another system posts trial_started
        with its API key; each customer gets one email that shows the event's
        plan and length as text, never as HTML, and leaves out what is missing
        or not a plain value. A blocklisted customer gets nothing. Ten days
        later, the reminder before the trial ends."""
        shipped = self.env.ref("behavioral_email.sequence_trial_started")
        self.assertEqual(shipped.state, "draft")
        self.start(shipped)
        self.env["mail.blacklist"]._add("bob@example.com")
        for email, properties in (
                ("alice@example.com", {"plan": "Pro", "trial_days": 14}),
                ("bob@example.com", {"plan": "Pro", "trial_days": 14}),
                ("carol@example.com", {"plan": "<b onmouseover='alert(1)'>Gold</b>\n", "trial_days": {"n": 3}})):
            response = self.post(self.event(email=email, properties=properties))
            self.assertEqual(response.status_code, 202, response.text)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertEqual(len(self._new_mails), 2)
        mail = self.assertQueued(self.alice, sequence=shipped)
        self.assertEqual(mail.subject, "Your trial has started")
        self.assertIn("Your trial of <strong>Pro</strong> has started and runs for 14 days.", mail.body_html)
        self.assertIn("Hi Alice,", mail.body_html)
        carol_mail = self.assertQueued(self.carol, sequence=shipped)
        self.assertIn("Your trial of <strong>&lt;b onmouseover='alert(1)'&gt;Gold&lt;/b&gt;</strong> has started.",
                      carol_mail.body_html)
        self.assertFalse(html.fromstring(carol_mail.body_html).xpath("//*[@onmouseover]"))
        self.assertNotIn("runs for", carol_mail.body_html)
        self.assertRecordValues(self.enrollments(shipped, self.bob), [{"state": "exited", "exit_reason": "blacklisted"}])

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=10, minutes=2))
        reminder = self.assertQueued(self.alice, sequence=shipped)
        self.assertEqual(reminder.subject, "Your trial ends soon")
        self.assertIn("Your trial of <strong>Pro</strong> ends in a few days.", reminder.body_html)
        self.assertEqual(len(self._new_mails), 2)
        self.assertEqual(set(self.enrollments(shipped).mapped("state")), {"done", "exited"})

    def test_event_property_accessor(self):
        """What an email may show of an event's properties: plain texts and
        numbers, as text; the default for anything else."""
        shipped = self.env.ref("behavioral_email.sequence_trial_started")
        self.start(shipped)
        with freeze_time(NOW):
            self.env["behavioral.trigger"]._capture_custom_event("trial_started", self.carol, {
                "plan": "  Pro\tplus \u202e ", "days": 14, "ratio": 2.5, "whole": 3.0, "trial": True,
                "nested": {"a": 1}, "list": [1], "empty": "", "none": None, "long": "x" * 500,
            })
        self.run_crons(NOW + timedelta(minutes=1), advance=False)
        get = self.enrollments(shipped, self.carol).ensure_one()._get_event_property
        self.assertEqual(get("plan"), "Pro plus")
        self.assertEqual((get("days"), get("ratio"), get("whole")), ("14", "2.5", "3"))
        for name in ("trial", "nested", "list", "empty", "none", "missing"):
            self.assertIs(get(name), False, name)
        self.assertEqual(get("missing", "your"), "your")
        self.assertEqual(len(get("long")), 200)

    def test_repeated_idempotency_key_returns_the_same_trigger(self):
        first = self.post(self.event(idempotency_key="order-42"))
        before = self.counts()
        again = self.post(self.event(idempotency_key="order-42", properties={"plan": "basic"}))
        self.assertEqual(again.status_code, 202)
        self.assertEqual(again.json(), {"id": first.json()["id"], "duplicate": True})
        self.assertEqual(self.counts(), before)
        # another API user's key of the same name is another event
        other = mail_new_test_user(
            self.env, login="events_api2", name="Events API 2", email="events.api2@example.com",
            groups="base.group_user,behavioral_email.group_behavioral_user")
        other_key = self.env["res.users.apikeys"].with_user(other).sudo()._generate(None, "events", None)
        third = self.post(self.event(idempotency_key="order-42"), key=other_key)
        self.assertEqual(third.status_code, 202)
        self.assertNotEqual(third.json()["id"], first.json()["id"])

    def test_unknown_email_creates_a_marked_contact(self):
        self.start(self.sequence)
        self.start(self.welcome_sequence)
        response = self.post(self.event(email="Zoe <zoe.new@example.com>"))
        self.assertEqual(response.status_code, 202, response.text)
        zoe = self.env["res.partner"].search([("email_normalized", "=", "zoe.new@example.com")])
        self.assertEqual(len(zoe), 1)
        self.assertTrue(zoe.behavioral_event_created)
        self.assertFalse(self.alice.behavioral_event_created)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(zoe, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 1, "the event is the signal: no welcome series besides")

    def test_partner_id_and_property_filter(self):
        self.start(self.sequence)
        body = {"event": "trial_started", "partner_id": self.bob.id, "properties": {"plan": "pro", "seats": 3},
                "occurred_at": NOW.isoformat()}
        self.assertEqual(self.post(body).status_code, 202)
        basic = self.post({"event": "trial_started", "partner_id": self.carol.id,
                           "properties": {"plan": "basic"}, "occurred_at": NOW.isoformat()})
        other = self.post({"event": "trial_ended", "partner_id": self.alice.id,
                           "properties": {"plan": "pro"}, "occurred_at": NOW.isoformat()})
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(self.bob, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 1)
        basic_trigger = self.env["behavioral.trigger"].browse(basic.json()["id"])
        self.assertIn("property “plan” does not match the filter", basic_trigger.state_msg)
        self.assertFalse(self.env["behavioral.trigger"].browse(other.json()["id"]).state_msg,
                         "another event's name is not a refusal")

    def test_property_filter_is_json_equality(self):
        self.sequence.custom_event_filter = '{"trial": true, "seats": 3}'
        self.start(self.sequence)
        for partner, properties in ((self.alice, {"plan": "pro", "trial": True, "seats": 3.0}),
                                    (self.bob, {"plan": "pro", "trial": 1, "seats": 3}),
                                    (self.carol, {"plan": "pro", "seats": 3})):
            self.assertEqual(self.post({"event": "trial_started", "partner_id": partner.id,
                                        "properties": properties, "occurred_at": NOW.isoformat()}).status_code, 202)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(self.alice, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 1, "1 is not true, a missing property is no match")

    def test_filter_and_event_name_are_validated_on_save(self):
        for values in ({"custom_event_filter": "[1, 2]"}, {"custom_event_filter": "{plan: pro}"},
                       {"custom_event_name": False}, {"custom_event_name": "has space"}):
            with self.subTest(values=values), self.assertRaises(ValidationError), self.env.cr.savepoint():
                self.sequence.write(values)
        self.sequence.custom_event_filter = ""
        self.assertEqual(self.sequence._get_custom_event_filter(), {})

    def test_bad_input_gets_4xx_and_stores_nothing(self):
        foreign_company = self.env["res.company"].create({"name": "Other Shop"})
        foreign = self.env["res.partner"].create({
            "name": "Foreign", "email": "foreign@example.com", "company_id": foreign_company.id})
        self.env["ir.config_parameter"].sudo().set_param("behavioral_email.event_max_bytes", 2048)
        before = self.counts()
        cases = {
            "malformed JSON": (400, '{"event": "x", '),
            "not UTF-8": (400, b'{"event": "\xff"}'),
            "blank body": (400, " "),
            "a list": (400, "[]"),
            "NaN": (400, '{"event": "trial_started", "email": "a@example.com", "properties": {"x": NaN}}'),
            "huge number": (400, '{"event": "trial_started", "email": "a@example.com", "properties": {"x": 1e999}}'),
            "too deep": (400, '{"event": "trial_started", "email": "a@example.com", "properties": '
                         + '{"a": ' * 100 + "1" + "}" * 100 + "}"),
            "NUL in a property": (400, json.dumps(self.event(properties={"x": "a\u0000b"}))),
            "lone surrogate": (400, '{"event": "trial_started", "email": "a@example.com", '
                               '"properties": {"x": "\\ud800"}}'),
            "missing event": (400, self.event(event=None) | {"event": None}),
            "no event key": (400, {k: v for k, v in self.event().items() if k != "event"}),
            "empty event": (400, self.event(event="")),
            "bad event name": (400, self.event(event="drop table;")),
            "event not text": (400, self.event(event=12)),
            "no customer": (400, {"event": "trial_started"}),
            "invalid email": (400, self.event(email="not an email")),
            "email not text": (400, self.event(email=["a@example.com"])),
            "unknown partner_id": (400, {"event": "trial_started", "partner_id": 999999999}),
            "partner_id out of range": (400, {"event": "trial_started", "partner_id": 2 ** 40}),
            "partner_id as text": (400, {"event": "trial_started", "partner_id": str(self.alice.id)}),
            "partner_id true": (400, {"event": "trial_started", "partner_id": True}),
            "partner of another company": (400, {"event": "trial_started", "partner_id": foreign.id}),
            "public partner": (400, {"event": "trial_started", "partner_id": self.public_partner.id}),
            "both email and partner_id": (400, self.event(partner_id=self.alice.id)),
            "properties not an object": (400, self.event(properties=["plan", "pro"])),
            "properties a text": (400, self.event(properties="plan=pro")),
            "bad occurred_at": (400, self.event(occurred_at="yesterday")),
            "occurred_at a number": (400, self.event(occurred_at=1700000000)),
            "occurred_at in the future": (400, self.event(occurred_at=(NOW + timedelta(days=1)).isoformat())),
            "idempotency key too long": (400, self.event(idempotency_key="k" * 129)),
            "idempotency key not printable": (400, self.event(idempotency_key="a\nb")),
            "idempotency key a number": (400, self.event(idempotency_key=7)),
            "unknown field": (400, self.event(propeties={})),
            "oversized payload": (413, self.event(properties={"blob": "x" * 4096})),
        }
        for label, (status, body) in cases.items():
            with self.subTest(label):
                raw = body if isinstance(body, (str, bytes)) else None
                response = self.post(body, raw=raw)
                self.assertEqual(response.status_code, status, response.text)
                self.assertIn("message", response.json())
                self.assertEqual(self.counts(), before)

    def test_authentication_and_rights(self):
        before = self.counts()
        for label, key, status in (("no key", False, 401), ("wrong key", "0" * 40, 401),
                                   ("user outside the groups", self.employee_key, 403)):
            with self.subTest(label):
                response = self.post(self.event(), key=key)
                self.assertEqual(response.status_code, status)
                self.assertEqual(self.counts(), before)
        # a GET is not an event
        with freeze_time(NOW):
            response = self.url_open(URL, headers={"Authorization": f"Bearer {self.api_key}"})
        self.assertEqual(response.status_code, 405)

    def test_rate_limit_per_api_user(self):
        self.env["ir.config_parameter"].sudo().set_param("behavioral_email.event_rate_limit", 3)
        for index in range(3):
            self.assertEqual(self.post(self.event(idempotency_key=f"r{index}")).status_code, 202)
        response = self.post(self.event(idempotency_key="r3"))
        self.assertEqual(response.status_code, 429)
        self.assertEqual(response.headers["Retry-After"], "60")
        self.assertEqual(self.counts()[0], 3)
        # a minute later the window has moved on
        self.assertEqual(self.post(self.event(idempotency_key="r3"), at=NOW + timedelta(minutes=2)).status_code, 202)

    def test_no_email_for_blocklisted_old_or_goal_met(self):
        self.sequence.goal = "order_placed"
        self.start(self.sequence)
        self.env["mail.blacklist"]._add("bob@example.com")
        self.assertEqual(self.post(self.event(email="bob@example.com")).status_code, 202)
        old = self.post(self.event(email="carol@example.com", occurred_at=(NOW - timedelta(days=4)).isoformat()))
        self.assertEqual(old.status_code, 202)
        self.assertEqual(self.post(self.event()).status_code, 202)
        # Alice orders right after the event, before the enrollment runs
        order = self.env["sale.order"].create({
            "partner_id": self.alice.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW + timedelta(seconds=30))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._new_mails)
        self.assertRecordValues(self.enrollments(self.sequence, self.bob), [{
            "state": "exited", "exit_reason": "blacklisted"}])
        self.assertFalse(self.enrollments(self.sequence, self.carol))
        self.assertIn("older than the entry window", self.env["behavioral.trigger"].browse(old.json()["id"]).state_msg)
        self.assertFalse(self.enrollments(self.sequence, self.alice))

    def test_python_api(self):
        self.start(self.sequence)
        Trigger = self.env["behavioral.trigger"]
        with freeze_time(NOW):
            trigger = Trigger._capture_custom_event(
                "trial_started", self.carol, {"plan": "pro"}, idempotency_key="addon:carol:1")
            again = Trigger._capture_custom_event(
                "trial_started", self.carol, {"plan": "pro"}, idempotency_key="addon:carol:1")
        self.assertEqual(trigger, again)
        self.assertEqual(trigger.occurred_at, NOW)
        for args in (("", self.carol, {}), ("trial_started", self.public_partner, {}),
                     ("trial_started", self.carol, ["x"]), ("trial_started", self.carol, {"x": object()}),
                     ("trial_started", self.env["res.partner"], {})):
            with self.subTest(args=args), self.assertRaises(ValidationError):
                Trigger._capture_custom_event(*args)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(self.carol, sequence=self.sequence)
