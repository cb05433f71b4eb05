"""Trigger kinds email_opened, email_clicked and email_not_opened.

The signals are produced the real way: a sequence email queued by the crons
(or a mass mailing) is sent through the mail queue, then opened through its
tracking pixel and clicked through its tracked link, over HTTP.
"""
import re
from datetime import timedelta
from unittest.mock import patch

from freezegun import freeze_time

from odoo.tests.common import HttpCase, tagged

from .common import NOW, BehavioralCommon

PIXEL = re.compile(r"/mail/track/\d+/[0-9a-f]+/blank\.gif")
TRACKED_LINK = re.compile(r"/r/[\w-]+/m/\d+")


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestEmailEngagement(HttpCase, BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.welcome_step = cls.welcome_sequence.step_ids.sorted()[0]
        cls.follow_up = cls.env["behavioral.sequence"].create({
            "name": "Glad you read it",
            "trigger_type": "email_opened",
            "engagement_step_id": cls.welcome_step.id,
            "step_ids": [(0, 0, {
                "subject": "More for you",
                "body_html": "<p>You read “<t t-out=\"object.payload.get('subject')\"/>”.</p>"
                             "<p>Clicked: <t t-out=\"object.payload.get('url') or 'nothing'\"/></p>",
                "delay_value": 0, "delay_unit": "hours",
            })],
        })

    # ------------------------------------------------------------
    # HELPERS
    # ------------------------------------------------------------

    def _customers(self, *names):
        return self.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": name, "email": f"{name.lower()}@example.com"} for name in names
        ])

    def _send_queued(self, at):
        """Send the mails queued meanwhile, as the mail queue does: the
        mailing traces become ``sent`` at ``at``. Returns {email: body}."""
        with freeze_time(at):
            self._new_mails.send()
        return {tuple(mail["email_to"])[0]: mail["body"] for mail in self._mails}

    def _receive_welcome(self, names, at=NOW):
        """New contacts get the welcome email, sent a minute later.
        Returns (contacts, {contact: body of the email as sent})."""
        with self.mock_queue():
            with freeze_time(at):
                contacts = self.env["res.partner"].create([
                    {"name": name, "email": f"{name.lower()}@example.com"} for name in names])
            self.run_crons(at + timedelta(minutes=1))
            bodies = self._send_queued(at + timedelta(minutes=2))
        return contacts, {contact: self._body_for(bodies, contact) for contact in contacts}

    def _body_for(self, bodies, partner):
        return next(body for email, body in bodies.items() if partner.email in email)

    def _open(self, body, at):
        path = PIXEL.search(body).group(0)
        with freeze_time(at):
            response = self.url_open(path)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Content-Type"], "image/gif")

    def _click(self, body, at):
        path = TRACKED_LINK.search(body).group(0)
        with freeze_time(at):
            response = self.url_open(path, allow_redirects=False)
        self.assertEqual(response.status_code, 301)
        return response.headers["Location"]

    def _mailing(self, model, recipients, **values):
        """A mass mailing of the Email Marketing app, sent at NOW."""
        mailing = self.env["mailing.mailing"].create(dict({
            "subject": "Spring sale",
            "body_html": "<p>Spring is here. <a href='https://shop.example.com/spring'>See the sale</a></p>",
            "email_from": "shop@example.com",
            "mailing_model_id": self.env["ir.model"]._get_id(model),
            "mailing_domain": repr([("id", "in", recipients.ids)]),
        }, **values))
        with self.mock_queue():
            with freeze_time(NOW):
                mailing.action_send_mail()
            bodies = self._send_queued(NOW + timedelta(minutes=1))
        return mailing, bodies

    def _triggers(self, kind):
        return self.env["behavioral.trigger"].search([("trigger_type", "=", kind)])

    # ------------------------------------------------------------
    # TESTS
    # ------------------------------------------------------------

    def test_open_starts_sequence(self):
        self.start(self.welcome_sequence)
        self.start(self.follow_up)
        (dora, eve), bodies = self._receive_welcome(["Dora", "Eve"])
        self._open(bodies[dora], NOW + timedelta(hours=1))

        trigger = self._triggers("email_opened")
        welcome_trace = self.enrollments(self.welcome_sequence, dora).trace_ids.mailing_trace_id
        self.assertRecordValues(trigger, [{
            "partner_id": dora.id, "res_model": "mailing.trace", "res_id": welcome_trace.id,
            "occurred_at": NOW + timedelta(hours=1), "state": "new",
        }])
        self.assertEqual(trigger.payload["subject"], "Welcome to Garden Shop")
        self.assertEqual(trigger.payload["step_id"], self.welcome_step.id)
        self.assertEqual(trigger.payload["sequence_id"], self.welcome_sequence.id)
        self.assertEqual(welcome_trace.trace_status, "open")

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
        mail = self.assertQueued(dora, sequence=self.follow_up)
        self.assertEqual(mail.subject, "More for you")
        self.assertIn("You read “Welcome to Garden Shop”", mail.body_html)
        self.assertQueued(eve, count=0)
        self.assertEqual(len(self.enrollments(self.follow_up)), 1)

        # opened again, every cron rerun: nothing more
        self._open(bodies[dora], NOW + timedelta(hours=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=1))
            self.run_crons(NOW + timedelta(hours=3))
        self.assertFalse(self._new_mails)
        self.assertEqual(len(self._triggers("email_opened")), 1)
        self.assertEqual(len(self.enrollments(self.follow_up)), 1)

    def test_click_starts_sequence(self):
        """A click through the tracked link: one trigger with the address
        clicked; opens are not recorded while no sequence wants them."""
        self.follow_up.write({"trigger_type": "email_clicked"})
        self.start(self.welcome_sequence)
        self.start(self.follow_up)
        (dora,), bodies = self._receive_welcome(["Dora"])
        location = self._click(bodies[dora], NOW + timedelta(hours=1))
        self.assertIn("/shop", location)

        trigger = self._triggers("email_clicked")
        self.assertEqual(trigger.partner_id, dora)
        self.assertIn("/shop", trigger.payload["url"])
        self.assertFalse(self._triggers("email_opened"), "no running sequence listens to opens")
        welcome_trace = self.enrollments(self.welcome_sequence, dora).trace_ids.mailing_trace_id
        self.assertEqual(welcome_trace.links_click_datetime, NOW + timedelta(hours=1))

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
        mail = self.assertQueued(dora, sequence=self.follow_up)
        self.assertIn("Clicked: http", mail.body_html)
        self.assertIn("/shop", mail.body_html)

        self._click(bodies[dora], NOW + timedelta(hours=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=1))
        self.assertFalse(self._new_mails)
        self.assertEqual(len(self._triggers("email_clicked")), 1)

    def test_click_through_another_mailings_link_starts_nothing(self):
        """Odoo's /r/<code>/m/<trace id> takes any link's code with any trace
        id. Bob puts the code of the spring sale's link he received on the
        trace of Dora's welcome email: he is redirected as always, the click
        counts for his link, and Dora's email is neither opened nor clicked:
        nothing starts for her. Her own click starts the follow-up, once."""
        self.follow_up.write({"trigger_type": "email_clicked", "engagement_step_id": False})
        on_open = self.follow_up.copy({"name": "You opened it", "trigger_type": "email_opened"})
        self.start(self.welcome_sequence)
        self.start(self.follow_up)
        self.start(on_open)
        (dora,), bodies = self._receive_welcome(["Dora"])
        dora_trace = self.enrollments(self.welcome_sequence, dora).trace_ids.mailing_trace_id
        mailing, sale_bodies = self._mailing("res.partner", self.bob)
        bob_link = TRACKED_LINK.search(self._body_for(sale_bodies, self.bob)).group(0)
        code = bob_link.split("/")[2]
        bob_trace = mailing.mailing_trace_ids
        self.assertNotEqual(bob_trace, dora_trace)

        with freeze_time(NOW + timedelta(hours=1)):
            response = self.url_open(f"/r/{code}/m/{dora_trace.id}", allow_redirects=False)
        self.assertEqual(response.status_code, 301)
        self.assertIn("https://shop.example.com/spring", response.headers["Location"])
        self.env.invalidate_all()
        self.assertRecordValues(dora_trace, [{
            "trace_status": "sent", "open_datetime": False, "links_click_datetime": False}])
        self.assertEqual(bob_trace.trace_status, "sent")
        link = self.env["link.tracker.code"].search([("code", "=", code)]).link_id
        [click] = self.env["link.tracker.click"].search([("link_id", "=", link.id)])
        self.assertRecordValues(click, [{"mailing_trace_id": False, "mass_mailing_id": mailing.id}])
        self.assertFalse(self._triggers("email_clicked") | self._triggers("email_opened"))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
        self.assertFalse(self._new_mails)

        self._click(bodies[dora], NOW + timedelta(hours=2))
        clicked = self._triggers("email_clicked")
        self.assertRecordValues(clicked, [{
            "partner_id": dora.id, "res_id": dora_trace.id, "occurred_at": NOW + timedelta(hours=2)}])
        self.assertIn("/shop", clicked.payload["url"])
        self.assertNotIn("spring", clicked.payload["url"], "the address Dora clicked, not Bob's")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=1))
        self.assertIn("/shop", self.assertQueued(dora, sequence=self.follow_up).body_html)
        self._click(bodies[dora], NOW + timedelta(hours=3))
        with freeze_time(NOW + timedelta(hours=3)):
            self.assertEqual(self.url_open(f"/r/{code}/m/{dora_trace.id}", allow_redirects=False).status_code, 301)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3, minutes=1))
        self.assertQueued(dora, count=0, sequence=self.follow_up)
        self.assertEqual(len(self._triggers("email_clicked")), 1)

    def test_capture_failure_never_breaks_the_tracking(self):
        """A capture that fails is logged; the customer is still redirected
        and Odoo still records the open and the click."""
        self.follow_up.write({"trigger_type": "email_clicked"})
        self.start(self.welcome_sequence)
        self.start(self.follow_up)
        (dora,), bodies = self._receive_welcome(["Dora"])
        Trigger = type(self.env["behavioral.trigger"])
        with patch.object(Trigger, "_capture_email_clicked", side_effect=RuntimeError("boom")), \
                self.assertLogs("odoo.addons.behavioral_email.models.mailing_trace", "ERROR"):
            self.assertIn("/shop", self._click(bodies[dora], NOW + timedelta(hours=1)))
        self.env.invalidate_all()
        trace = self.enrollments(self.welcome_sequence, dora).trace_ids.mailing_trace_id
        self.assertRecordValues(trace, [{
            "trace_status": "open", "links_click_datetime": NOW + timedelta(hours=1)}])
        self.assertFalse(self._triggers("email_clicked"))

    def test_own_emails_do_not_loop(self):
        """A sequence reacting to any email ignores its own emails: opening
        the follow-up does not enroll the customer again."""
        self.follow_up.write({"engagement_step_id": False, "reentry": "always"})
        self.start(self.welcome_sequence)
        self.start(self.follow_up)
        (dora,), bodies = self._receive_welcome(["Dora"])
        self._open(bodies[dora], NOW + timedelta(hours=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
            self.assertQueued(dora, sequence=self.follow_up)
            follow_up_body = self._body_for(self._send_queued(NOW + timedelta(hours=1, minutes=2)), dora)
        self._open(follow_up_body, NOW + timedelta(hours=2))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2, minutes=1))
        self.assertFalse(self._new_mails)
        own = self._triggers("email_opened").filtered(lambda t: t.payload["sequence_id"] == self.follow_up.id)
        self.assertEqual(own.state, "done")
        self.assertIn("an email of this sequence itself", own.state_msg)
        self.assertEqual(len(self.enrollments(self.follow_up)), 1)

    def test_mass_mailing_recipients(self):
        """Opens of a mass mailing: the customer is the recipient contact, or
        the contact with the address of a mailing-list subscriber; never the
        public user; a blocklisted customer gets nothing."""
        self.follow_up.write({"engagement_step_id": False})
        self.start(self.follow_up)
        # a mailing to archived contacts too reaches the (archived) public user
        self.public_partner.email = "public@example.com"
        recipients = self.public_partner | self.bob
        _mailing, bodies = self._mailing("res.partner", recipients, mailing_domain=repr(
            [("id", "in", recipients.ids), ("active", "in", [True, False])]))
        self.assertEqual(len(bodies), 2)
        mailing_list = self.env["mailing.list"].create({
            "name": "Newsletter",
            "contact_ids": [(0, 0, {"name": "Carol C.", "email": "carol@example.com"})],
        })
        _list_mailing, list_bodies = self._mailing(
            "mailing.list", mailing_list, contact_list_ids=[(6, 0, mailing_list.ids)],
            mailing_domain="[]", subject="Newsletter")
        self.env["mail.blacklist"]._add(self.bob.email)

        self._open(self._body_for(bodies, self.public_partner), NOW + timedelta(hours=1))
        self._open(self._body_for(bodies, self.bob), NOW + timedelta(hours=1))
        self._open(self._body_for(list_bodies, self.carol), NOW + timedelta(hours=1))
        triggers = self._triggers("email_opened")
        self.assertEqual(triggers.partner_id, self.bob | self.carol, "no trigger for the public user")
        self.assertEqual(triggers.filtered(lambda t: t.partner_id == self.carol).payload["subject"], "Newsletter")

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
        self.assertQueued(self.bob, count=0)
        self.assertIn("You read “Newsletter”", self.assertQueued(self.carol, sequence=self.follow_up).body_html)
        self.assertEqual(len(self._new_mails), 1)
        self.assertRecordValues(self.enrollments(self.follow_up, self.bob), [
            {"state": "exited", "exit_reason": "blacklisted"}])

    def test_goal_met_and_entry_window(self):
        """An open by a customer who orders before enrollment, or one
        enrolled only after the entry window, starts nothing."""
        self.start(self.welcome_sequence)
        self.start(self.follow_up)
        (dora, eve), bodies = self._receive_welcome(["Dora", "Eve"])
        self._open(bodies[dora], NOW + timedelta(hours=1))
        order = self.env["sale.order"].create({
            "partner_id": dora.id, "order_line": [(0, 0, {"product_id": self.pot.id})]})
        self.confirm(order, NOW + timedelta(hours=1, minutes=30))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2))
        self.assertQueued(dora, count=0)
        self.assertIn("goal already reached", self._triggers("email_opened").state_msg)

        self._open(bodies[eve], NOW + timedelta(hours=3))
        self.welcome_sequence.action_pause()  # its second email is not what this test is about
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=3) + timedelta(hours=self.follow_up.entry_window_hours, minutes=1))
        self.assertQueued(eve, count=0)
        late = self._triggers("email_opened").filtered(lambda t: t.partner_id == eve)
        self.assertIn("older than the entry window", late.state_msg)
        self.assertFalse(self.enrollments(self.follow_up))

    def test_not_opened(self):
        """N days after the welcome email: those who did not open it enroll,
        once; an email sent long before the sequence started is left alone."""
        not_opened = self.follow_up.copy({"name": "Did you see it?", "trigger_type": "email_not_opened"})
        self.assertEqual(not_opened.not_opened_days, 3)
        self.start(self.welcome_sequence, at=NOW - timedelta(days=11))
        (fred,), _old = self._receive_welcome(["Fred"], at=NOW - timedelta(days=10))
        (dora, eve), bodies = self._receive_welcome(["Dora", "Eve"])
        self._open(bodies[dora], NOW + timedelta(hours=5))
        self.welcome_sequence.action_pause()  # its second email is not what this test is about
        self.start(not_opened, at=NOW + timedelta(days=1))

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3))
        self.assertFalse(self._new_mails, "not three days yet")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=5))
        mail = self.assertQueued(eve, sequence=not_opened)
        self.assertIn("Welcome to Garden Shop", mail.body_html)
        self.assertQueued(dora, count=0)
        self.assertQueued(fred, count=0)
        self.assertEqual(len(self._new_mails), 1)
        trigger = self._triggers("email_not_opened")
        self.assertRecordValues(trigger, [{
            "partner_id": eve.id, "occurred_at": NOW + timedelta(days=3, minutes=2)}])
        self.assertEqual(trigger.payload["days"], 3)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=30))
            self.run_crons(NOW + timedelta(days=4))
        self.assertFalse(self._new_mails)
        self.assertEqual(len(self._triggers("email_not_opened")), 1)

    def test_not_opened_detection_queries(self):
        """Detection is one statement whatever the number of unopened emails."""
        not_opened = self.follow_up.copy({
            "name": "Did you see it?", "trigger_type": "email_not_opened", "engagement_step_id": False})
        self.start(not_opened)
        counts = []
        for index, size in enumerate((1, 2, 20)):
            sent = NOW + timedelta(days=10 * index)
            customers = self._customers(*(f"Reader{index}x{i}" for i in range(size)))
            mailing = self.env["mailing.mailing"].create({
                "subject": f"Issue {index}", "body_html": "<p>News</p>", "email_from": "shop@example.com",
                "mailing_model_id": self.env["ir.model"]._get_id("res.partner"),
                "mailing_domain": repr([("id", "in", customers.ids)]),
            })
            with self.mock_queue():
                with freeze_time(sent):
                    mailing.action_send_mail()
                self._send_queued(sent)
            with freeze_time(sent + timedelta(days=3, hours=1)):
                count, created = self.count_queries(self.env["behavioral.trigger"]._cron_detect)
                counts.append(count)
            self.assertEqual(len(created), size)
        self.assertEqual(counts[1], counts[2], f"detection queries for 2 and 20 unopened emails: {counts}")

    def test_tampered_tracking_urls(self):
        """Forged pixels and links answer 4xx (or the plain redirection core
        gives a link without its email) and record nothing."""
        self.follow_up.write({"engagement_step_id": False})
        self.start(self.welcome_sequence)
        self.start(self.follow_up)
        (dora,), bodies = self._receive_welcome(["Dora"])
        trace = self.enrollments(self.welcome_sequence, dora).trace_ids.mailing_trace_id
        pixel = PIXEL.search(bodies[dora]).group(0)
        mail_id = pixel.split("/")[3]
        link = TRACKED_LINK.search(bodies[dora]).group(0)
        code = link.split("/")[2]
        with freeze_time(NOW + timedelta(hours=1)):
            for path in (
                f"/mail/track/{mail_id}/{'0' * 64}/blank.gif",   # wrong token
                f"/mail/track/{int(mail_id) + 999}/{pixel.split('/')[4]}/blank.gif",  # token of another mail
                "/mail/track/abc/def/blank.gif",                  # not even numbers
            ):
                self.assertIn(self.url_open(path).status_code, (401, 404), path)
            self.assertEqual(self.url_open(f"/r/nope{code}/m/{trace.id}", allow_redirects=False).status_code, 404)
            # a link with an unknown email: redirected, but no email is concerned
            self.assertEqual(self.url_open(f"/r/{code}/m/{trace.id + 999}", allow_redirects=False).status_code, 301)
        self.assertEqual(trace.trace_status, "sent")
        self.assertFalse(self.env["behavioral.trigger"].search([
            ("trigger_type", "in", ("email_opened", "email_clicked"))]))

    # ------------------------------------------------------------
    # SHIPPED SEQUENCES
    # ------------------------------------------------------------

    def test_shipped_read_the_favourites(self):
        """"Read the favourites, not ordered": two days after a new contact
        opened the welcome sequence's favourites, one email; nothing for an
        open of another email, nor for a contact who unsubscribed meanwhile."""
        shipped = self.env.ref("behavioral_email.sequence_email_opened")
        favourites_step = self.welcome_sequence.step_ids.sorted()[1]
        self.assertRecordValues(shipped, [{
            "state": "draft", "trigger_type": "email_opened", "engagement_step_id": favourites_step.id,
            "goal": "order_placed", "reentry": "partner"}])
        self.start(self.welcome_sequence)
        self.start(shipped)
        (dora, eve), first = self._receive_welcome(["Dora", "Eve"])
        self._open(first[dora], NOW + timedelta(hours=1))  # the first welcome email: not the one watched
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=2))
            favourites = self._send_queued(NOW + timedelta(days=3, minutes=3))
        self.assertEqual(len(favourites), 2, "both got the favourites")
        self.env["mail.blacklist"]._add(eve.email)
        for contact in (dora, eve):
            self._open(self._body_for(favourites, contact), NOW + timedelta(days=3, hours=1))

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, hours=2))
        self.assertFalse(self._new_mails, "two days after the open")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=5, hours=1, minutes=1))
        mail = self.assertQueued(dora, sequence=shipped)
        self.assertEqual(mail.subject, "Anything catch your eye?")
        self.assertIn("Hi Dora,", mail.body_html)
        self.assertIn("Start shopping", mail.body_html)
        self.assertQueued(eve, count=0)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(self.enrollments(shipped, eve).exit_reason, "blacklisted")

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=5, hours=3))
            self.run_crons(NOW + timedelta(days=8))
        self.assertFalse(self._new_mails.filtered(lambda m: self.env["behavioral.enrollment"].browse(
            m.res_id).sequence_id == shipped))

    def test_shipped_clicked_not_ordered(self):
        """"Clicked, not ordered": a day after a click on a marketing email,
        one email; a later click on another email adds nothing (once per
        customer); a customer who orders meanwhile gets nothing."""
        shipped = self.env.ref("behavioral_email.sequence_email_clicked")
        self.assertRecordValues(shipped, [{
            "state": "draft", "trigger_type": "email_clicked", "engagement_step_id": False,
            "engagement_mailing_id": False, "goal": "order_placed", "reentry": "partner"}])
        self.start(self.welcome_sequence)
        self.start(shipped)
        (dora, eve), bodies = self._receive_welcome(["Dora", "Eve"])
        for contact in (dora, eve):
            self._click(bodies[contact], NOW + timedelta(hours=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
        self.assertFalse(self._new_mails, "a day after the click")
        order = self.env["sale.order"].create({
            "partner_id": eve.id, "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})]})
        self.confirm(order, NOW + timedelta(hours=3))

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, hours=1, minutes=1))
        mail = self.assertQueued(dora, sequence=shipped)
        self.assertEqual(mail.subject, "Did you find what you were looking for?")
        self.assertIn("Hi Dora,", mail.body_html)
        self.assertIn("Back to the shop", mail.body_html)
        self.assertQueued(eve, count=0)
        self.assertRecordValues(self.enrollments(shipped, eve), [{"state": "exited", "exit_reason": "goal"}])

        # the favourites, clicked too: Dora heard from this sequence already
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, minutes=2))
            favourites = self._send_queued(NOW + timedelta(days=3, minutes=3))
        self._click(self._body_for(favourites, dora), NOW + timedelta(days=3, hours=1))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=4, hours=2))
        self.assertQueued(dora, count=0, sequence=shipped)
        self.assertEqual(len(self._triggers("email_clicked").filtered(lambda t: t.partner_id == dora)), 2)
        self.assertEqual(len(self.enrollments(shipped, dora)), 1)

    def test_shipped_winback_second_try(self):
        """"Win-back, second try": three days after the first win-back email,
        one email with a new subject to those who did not open it; nothing for
        those who did, nor for a customer blocklisted meanwhile."""
        winback = self.env.ref("behavioral_email.sequence_winback")
        shipped = self.env.ref("behavioral_email.sequence_winback_not_opened")
        self.assertRecordValues(shipped, [{
            "state": "draft", "trigger_type": "email_not_opened", "not_opened_days": 3,
            "engagement_step_id": winback.step_ids.sorted()[0].id, "goal": "order_placed"}])
        customers = self.alice | self.bob | self.carol
        for customer in customers:
            order = self.env["sale.order"].create({
                "partner_id": customer.id,
                "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})]})
            self.confirm(order, NOW - timedelta(days=90) + timedelta(hours=1))
        self.start(winback)
        self.start(shipped)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2))
            first = self._send_queued(NOW + timedelta(hours=2, minutes=1))
        self.assertEqual(len(first), 3)
        self._open(self._body_for(first, self.carol), NOW + timedelta(days=1))
        self.env["mail.blacklist"]._add(self.bob.email)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, hours=2))
        self.assertFalse(self._new_mails, "not three days yet")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, hours=2, minutes=5))
        mail = self.assertQueued(self.alice, sequence=shipped)
        self.assertEqual(mail.subject, "We kept a few things aside for you")
        self.assertIn("Hi Alice,", mail.body_html)
        self.assertEqual(len(self._new_mails), 1, "not Carol, who read it; not Bob, blocklisted")
        self.assertEqual(self.enrollments(shipped, self.bob).exit_reason, "blacklisted")
        self.assertFalse(self.enrollments(shipped, self.carol))

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=3, hours=3))
            self.run_crons(NOW + timedelta(days=4))
        self.assertFalse(self._new_mails)
