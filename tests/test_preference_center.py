"""The customer's preference page, over real HTTP: through the signed link of
an email and as a portal user; every bad input answers 4xx and changes
nothing; a real browser tour; and the whole story end to end."""
import json
import re
from datetime import date, timedelta
from urllib.parse import urlparse

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.tests.common import HttpCase, tagged

from .common import NOW, BehavioralCommon

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PREFERENCES_LINK_RE = re.compile(r'href="([^"]*/email-preferences/\d+/[0-9a-f]+)"[^>]*>Manage preferences<')


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class PreferencePageCase(BehavioralCommon, HttpCase):
    """The shop, plus what it takes to browse the preference page."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.topic_cart = cls.env.ref("behavioral_email.mailing_list_topic_cart")
        cls.topic_purchase = cls.env.ref("behavioral_email.mailing_list_topic_purchase")
        cls.topic_news = cls.env.ref("behavioral_email.mailing_list_topic_news")
        cls.private_list = cls.env["mailing.list"].create({"name": "VIP (internal)", "is_public": False})
        cls.env["mailing.contact"].create({
            "name": "Bob", "email": "bob@example.com",
            "subscription_ids": [(0, 0, {"list_id": cls.private_list.id})],
        })

    # ------------------------------------------------------------
    # HELPERS
    # ------------------------------------------------------------

    def path(self, partner):
        return partner._behavioral_preference_path()

    def open_page(self, path):
        response = self.url_open(path)
        self.assertEqual(response.status_code, 200, response.text[:500])
        return response

    def csrf(self, path=None):
        """A CSRF token of the current session, read from a page (the page of
        ``path``, or Alice's)."""
        html = self.open_page(path or self.path(self.alice)).text
        return CSRF_RE.search(html).group(1)

    def post(self, path, data, csrf=True, csrf_from=None):
        data = dict(data)
        if csrf:
            data["csrf_token"] = self.csrf(csrf_from)
        return self.url_open(path, data=data, allow_redirects=False)

    def form(self, partner, frequency="all", pause_until="", changes=None):
        """What the browser posts for ``partner``: the boxes as the page shows
        them, with ``changes`` ({mailing.list: checked}) applied."""
        lists = self.env["mailing.list"]._behavioral_get_offered(partner.email)
        states = self.env["mailing.list"]._behavioral_get_states(partner.email)
        checked = {mlist: mlist._behavioral_is_subscribed(states) for mlist in lists}
        checked.update(changes or {})
        data = {"frequency": frequency, "pause_until": pause_until}
        for mlist, on in checked.items():
            if on:
                data[f"topic_{mlist.id}"] = "1"
        return data

    def state(self, partner):
        """Everything the page can change, to compare before and after."""
        partner.invalidate_recordset()
        return {
            "frequency": partner.behavioral_frequency,
            "pause": partner.behavioral_pause_until,
            "lists": self.env["mailing.list"]._behavioral_get_states(partner.email),
            "blocklisted": bool(self.env["mail.blacklist"].search([("email", "=", partner.email_normalized)])),
            "ledger": self.env["behavioral.consent"].search_count([]),
        }

    def ledger(self, partner):
        return self.env["behavioral.consent"].search([("partner_id", "=", partner.id)], order="id")


class TestPreferencePage(PreferencePageCase):

    def test_marketing_email_links_to_the_page(self):
        """Every marketing email says why it is sent and links to the page;
        the link is the customer's own, not a tracked one."""
        self.start(self.cart_sequence)
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        mail = self.assertQueued(self.alice)
        link = PREFERENCES_LINK_RE.search(mail.body_html).group(1)
        self.assertEqual(urlparse(link).path, self.path(self.alice))
        self.assertIn("You receive this email because you left items in your cart.", mail.body_html)
        self.assertIn("/unsubscribe_from_list", mail.body_html)
        self.assertFalse(self.env["link.tracker"].search([("url", "like", "/email-preferences/")]))

    def test_transactional_email_has_no_preference_footer(self):
        self.order_sequence.consent_mode = "transactional"
        self.start(self.order_sequence)
        order = self.env["sale.order"].create({
            "partner_id": self.carol.id, "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW)
        with self.mock_queue():
            self.run_crons(self.later(minutes=1))
        mail = self.assertQueued(self.carol, sequence=self.order_sequence)
        self.assertNotIn("Manage preferences", mail.body_html)

    def test_page_through_the_link(self):
        html = self.open_page(self.path(self.alice)).text
        self.assertIn("alice@example.com", html)
        for topic in (self.topic_cart, self.topic_purchase, self.topic_news):
            self.assertIn(f'name="topic_{topic.id}"', html)
            self.assertIn(topic.behavioral_description, html)
        self.assertNotIn(f"topic_{self.private_list.id}", html, "a private list of someone else")
        for value in ("all", "weekly", "monthly"):
            self.assertRegex(html, rf'<input[^>]*name="frequency"[^>]*value="{value}"')
        self.assertIn('name="pause_until"', html)
        self.assertIn("At most one email a week", html)
        self.assertIn("Order confirmations, delivery updates", html)
        self.assertIn("Download my data", html)
        self.assertIn("Delete my data", html)

    def test_save_through_the_link(self):
        path = self.path(self.alice)
        response = self.post(path, self.form(
            self.alice, "weekly", "2090-05-01", {self.topic_cart: False}))
        self.assertEqual(response.status_code, 303)
        self.assertTrue(response.headers["Location"].endswith(f"{path}?saved=1"))
        self.assertEqual(self.state(self.alice) | {"ledger": 0}, {
            "frequency": "weekly", "pause": date(2090, 5, 1), "blocklisted": False, "ledger": 0,
            "lists": {self.topic_cart.id: "unsubscribed"},
        })
        self.assertRecordValues(self.ledger(self.alice), [
            {"action": "unsubscribed", "list_id": self.topic_cart.id, "details": False},
            {"action": "frequency", "list_id": False, "details": "weekly"},
            {"action": "paused", "list_id": False, "details": "2090-05-01"},
        ])
        self.assertEqual(set(self.ledger(self.alice).mapped("source")), {"preference_center"})
        self.assertEqual(set(self.ledger(self.alice).mapped("email")), {"alice@example.com"})
        self.assertFalse(self.ledger(self.alice).user_id, "no staff member made these changes")
        self.assertTrue(all(self.ledger(self.alice).mapped("ip")))
        # saved again unchanged: nothing new in the ledger; then resumed
        self.post(path, self.form(self.alice, "weekly", "2090-05-01"))
        self.assertEqual(len(self.ledger(self.alice)), 3)
        self.post(path, self.form(self.alice, "weekly", "", {self.topic_cart: True}))
        self.assertEqual(self.ledger(self.alice)[-2:].mapped("action"), ["subscribed", "resumed"])
        self.assertEqual(self.state(self.alice)["lists"], {self.topic_cart.id: "subscribed"})
        html = self.open_page(f"{path}?saved=1").text
        self.assertIn("Your preferences are saved.", html)
        self.assertIn("Frequency changed", html)

    def test_page_in_the_customers_language(self):
        self.env["res.lang"]._activate_lang("fr_FR")
        website = self.env["website"].browse(1)
        website.language_ids |= self.env.ref("base.lang_fr")
        self.alice.lang = "fr_FR"
        path = self.path(self.alice)
        response = self.url_open(path, allow_redirects=False)
        self.assertEqual(response.status_code, 303)
        self.assertTrue(urlparse(response.headers["Location"]).path.endswith(f"/fr{path}"))
        # a language chosen in the link is kept
        self.open_page(f"/fr{path}")

    def test_bad_links_answer_404_and_change_nothing(self):
        good = self.alice._behavioral_preference_token()
        tampered = good[:-1] + ("0" if good[-1] != "0" else "1")
        bob_token = self.bob._behavioral_preference_token()
        bad_paths = [
            f"/email-preferences/{self.alice.id}/{tampered}",
            f"/email-preferences/{self.alice.id}/{bob_token}",  # someone else's token
            f"/email-preferences/{self.bob.id}/{good}",  # Alice's token on Bob
            f"/email-preferences/999999999/{good}",
            f"/email-preferences/99999999999/{good}",  # beyond a database integer
            f"/email-preferences/{self.alice.id}/not-a-token",
            f"/email-preferences/0/{good}",
        ]
        before = self.state(self.alice), self.state(self.bob)
        for path in bad_paths:
            self.assertEqual(self.url_open(path).status_code, 404, path)
            response = self.post(path, self.form(self.alice, "monthly", "2090-01-01", {self.topic_cart: False}))
            self.assertEqual(response.status_code, 404, path)
            for action in ("unsubscribe", "export", "delete"):
                response = self.post(f"{path}/{action}", {"confirm": "1"})
                self.assertEqual(response.status_code, 404, f"{path}/{action}")
        self.assertEqual((self.state(self.alice), self.state(self.bob)), before)

    def test_link_dies_with_the_address_it_was_sent_to(self):
        path = self.path(self.alice)
        self.alice.email = "alice.new@example.com"
        self.assertEqual(self.url_open(path).status_code, 404)
        self.open_page(self.path(self.alice))

    def test_missing_csrf_changes_nothing(self):
        path = self.path(self.alice)
        self.open_page(path)  # a session, but no token sent
        before = self.state(self.alice)
        response = self.post(path, self.form(self.alice, "monthly", "", {self.topic_cart: False}), csrf=False)
        self.assertEqual(response.status_code, 400)
        response = self.post(path, dict(self.form(self.alice, "monthly"), csrf_token="forged"), csrf=False)
        self.assertEqual(response.status_code, 400)
        for action in ("unsubscribe", "delete"):
            self.assertEqual(self.post(f"{path}/{action}", {"confirm": "1"}, csrf=False).status_code, 400)
        self.assertEqual(self.state(self.alice), before)

    def test_bad_input_answers_400_and_changes_nothing(self):
        path = self.path(self.alice)
        form = self.form(self.alice, "weekly", "", {self.topic_cart: False})
        cases = {
            "unknown list id": {**form, "topic_999999": "1"},
            "list id not a number": {**form, "topic_abc": "1"},
            "another customer's private list": {**form, f"topic_{self.private_list.id}": "1"},
            "shown list unknown": {**form, "topics": "999999"},
            "box of a list not shown": {**form, "topics": str(self.topic_purchase.id)},
            "unknown frequency": {**form, "frequency": "daily"},
            "malformed date": {**form, "pause_until": "2026-13-45"},
            "not a date": {**form, "pause_until": "next monday"},
            "other date format": {**form, "pause_until": "01/05/2090"},
            "date in the past": {**form, "pause_until": "2000-01-01"},
            "date beyond the calendar": {**form, "pause_until": "9999-12-31"},
        }
        before = self.state(self.alice)
        for name, data in cases.items():
            response = self.post(path, data)
            self.assertEqual(response.status_code, 400, name)
            self.assertIn("alert-danger", response.text, name)
        response = self.post(f"{path}/unsubscribe", {"reason_id": "999999"})
        self.assertEqual(response.status_code, 400)
        response = self.post(f"{path}/unsubscribe", {"reason_id": "x"})
        self.assertEqual(response.status_code, 400)
        response = self.post(f"{path}/delete", {})
        self.assertEqual(response.status_code, 400, "erasure needs its confirmation")
        self.assertEqual(self.state(self.alice), before)

    def test_customer_with_a_private_list_may_leave_it(self):
        """Bob sees the private list he is on and may leave it; Alice may not join it."""
        html = self.open_page(self.path(self.bob)).text
        self.assertIn(f'name="topic_{self.private_list.id}"', html)
        self.post(self.path(self.bob), self.form(self.bob, "all", "", {self.private_list: False}),
                  csrf_from=self.path(self.bob))
        self.assertEqual(self.state(self.bob)["lists"], {self.private_list.id: "unsubscribed"})

    def test_unsubscribe_from_everything_and_back(self):
        path = self.path(self.alice)
        reason = self.env["mailing.subscription.optout"].search([], limit=1)
        response = self.post(f"{path}/unsubscribe", {"reason_id": str(reason.id), "feedback": "Too many"})
        self.assertEqual(response.status_code, 303)
        entry = self.env["mail.blacklist"].search([("email", "=", "alice@example.com")])
        self.assertRecordValues(entry, [{"active": True, "opt_out_reason_id": reason.id}])
        self.assertRecordValues(self.ledger(self.alice), [{
            "action": "blocklisted", "source": "preference_center", "list_id": False,
            "details": f"{reason.name} – Too many",
        }])
        html = self.open_page(f"{path}?unsubscribed=1").text
        self.assertIn("You will receive no more marketing email from us.", html)
        self.assertIn("Subscribe again", html)
        self.post(f"{path}/resubscribe", {})
        self.assertFalse(entry.active)
        self.assertEqual(self.ledger(self.alice)[-1].action, "unblocklisted")

    def test_get_on_an_action_changes_nothing(self):
        path = self.path(self.alice)
        before = self.state(self.alice)
        for action in ("unsubscribe", "resubscribe", "export"):
            response = self.url_open(f"{path}/{action}", allow_redirects=False)
            self.assertEqual(response.status_code, 303)
        html = self.open_page(f"{path}/delete").text
        self.assertIn("Yes, delete my data", html)
        self.assertEqual(self.state(self.alice), before)


class TestPortalPreferences(PreferencePageCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.portal_user = mail_new_test_user(
            cls.env, login="pref_portal", password="pref_portal", name="Paula Portal",
            email="paula@example.com", groups="base.group_portal")
        cls.paula = cls.portal_user.partner_id

    def test_portal_home_has_a_card(self):
        self.authenticate("pref_portal", "pref_portal")
        html = self.open_page("/my").text
        self.assertIn('href="/my/email-preferences"', html)
        self.assertIn("Email preferences", html)

    def test_portal_page_changes_own_preferences_only(self):
        self.authenticate("pref_portal", "pref_portal")
        html = self.open_page("/my/email-preferences").text
        self.assertIn("paula@example.com", html)
        self.assertNotIn("alice@example.com", html)
        before_alice = self.state(self.alice)
        response = self.post("/my/email-preferences", {
            **self.form(self.paula, "monthly", "", {self.topic_cart: False}),
            "partner_id": str(self.alice.id),  # ignored: the page is the user's own
        }, csrf_from="/my/email-preferences")
        self.assertEqual(response.status_code, 303)
        self.assertEqual(self.paula.behavioral_frequency, "monthly")
        self.assertEqual(self.state(self.paula)["lists"], {self.topic_cart.id: "unsubscribed"})
        self.assertEqual(self.state(self.alice) | {"ledger": 0}, before_alice | {"ledger": 0})
        # the portal user cannot use someone else's link to reach a page either
        self.assertEqual(self.url_open(f"/email-preferences/{self.alice.id}/{'0' * 64}").status_code, 404)

    def test_portal_user_without_address(self):
        mail_new_test_user(self.env, login="no_email", password="no_email", name="Nora Noemail",
                           email=False, groups="base.group_portal")
        self.authenticate("no_email", "no_email")
        self.open_page("/my/email-preferences")
        before = self.env["mail.blacklist"].search_count([])
        for action in ("unsubscribe", "resubscribe"):
            response = self.post(f"/my/email-preferences/{action}", {"feedback": "x"},
                                 csrf_from="/my/email-preferences")
            self.assertEqual(response.status_code, 400)
        self.assertEqual(self.env["mail.blacklist"].search_count([]), before)

    def test_portal_page_needs_login(self):
        response = self.url_open("/my/email-preferences", allow_redirects=False)
        self.assertIn(response.status_code, (302, 303))
        self.assertIn("/web/login", response.headers["Location"])


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestPreferenceTours(PreferencePageCase):
    """A real browser on the page: toggle a topic, set a frequency, pause, save."""

    def assert_tour_result(self, partner):
        partner.invalidate_recordset()
        self.assertEqual(partner.behavioral_frequency, "weekly")
        self.assertTrue(partner.behavioral_pause_until)
        self.assertGreater(partner.behavioral_pause_until, partner.create_date.date())
        self.assertEqual(self.state(partner)["lists"], {self.topic_cart.id: "unsubscribed"})
        self.assertEqual(
            sorted(self.ledger(partner).mapped("action")), ["frequency", "paused", "unsubscribed"])
        self.assertEqual(set(self.ledger(partner).mapped("source")), {"preference_center"})
        paused = self.ledger(partner).filtered(lambda r: r.action == "paused")
        self.assertEqual(paused.details, partner.behavioral_pause_until.isoformat())

    def test_tour_through_the_email_link(self):
        self.start_tour(self.path(self.alice), "behavioral_email_preferences_tour", timeout=120)
        self.assert_tour_result(self.alice)

    def test_tour_as_portal_user(self):
        user = mail_new_test_user(
            self.env, login="tour_portal", password="tour_portal", name="Tom Portal",
            email="tom@example.com", groups="base.group_portal")
        self.start_tour("/my/email-preferences", "behavioral_email_preferences_tour",
                        login="tour_portal", timeout=120)
        self.assert_tour_result(user.partner_id)


class TestPreferenceEndToEnd(PreferencePageCase):

    def test_customer_turns_a_topic_off_and_goes_weekly(self):
        """A customer who received a cart email opens "Manage preferences" from
        it, turns cart reminders off and chooses at most one email a week: the
        crons then send nothing from that topic and at most one email a week
        from the others; the ledger shows both changes with source and date;
        the export contains them; a tampered link changes nothing."""
        self.start(self.cart_sequence)
        self.start(self.order_sequence)
        self.make_cart(self.alice)
        self.make_cart(self.bob)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        mail = self.assertQueued(self.alice)
        self.assertQueued(self.bob)

        # from the email to the page
        link = urlparse(PREFERENCES_LINK_RE.search(mail.body_html).group(1)).path
        page = self.open_page(link).text
        self.assertRegex(page, rf'<input[^>]*name="topic_{self.topic_cart.id}"[^>]*checked')
        response = self.post(link, self.form(self.alice, "weekly", "", {self.topic_cart: False}), csrf_from=link)
        self.assertEqual(response.status_code, 303)

        # a tampered link changes nothing
        before = self.state(self.alice)
        tampered = link[:-4] + ("abcd" if not link.endswith("abcd") else "dcba")
        response = self.post(tampered, self.form(self.alice, "all", "", {self.topic_cart: True}), csrf_from=link)
        self.assertEqual(response.status_code, 404)
        self.assertEqual(self.state(self.alice), before)

        # the ledger: both changes, their source and date
        unsubscribed, frequency = self.ledger(self.alice)
        self.assertRecordValues(unsubscribed | frequency, [
            {"action": "unsubscribed", "list_id": self.topic_cart.id, "source": "preference_center", "details": False},
            {"action": "frequency", "list_id": False, "source": "preference_center", "details": "weekly"},
        ])
        self.assertTrue(unsubscribed.date and frequency.date)

        # the crons: nothing more from cart reminders (Bob, untouched, gets his)
        with self.mock_queue():
            self.run_crons(self.later(days=1, hours=3))
        self.assertQueued(self.alice, count=0)
        self.assertQueued(self.bob)
        # an order: its thanks wait until a week after the cart email
        order = self.env["sale.order"].create({
            "partner_id": self.alice.id, "website_id": self.website.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(order, self.later(days=2))
        self.make_cart(self.alice, at=self.later(days=2, hours=1))
        sent = [self.later(hours=3)]
        for day in range(2, 30):
            with self.mock_queue():
                self.run_crons(self.later(days=day, hours=3, minutes=1))
            mails = self._new_mails.filtered(lambda m: self.alice in m.recipient_ids)
            self.assertLessEqual(len(mails), 1)
            self.assertFalse(mails.filtered(lambda m: m.mailing_id in self.cart_sequence.step_ids.mailing_id))
            if mails:
                sent.append(self.later(days=day, hours=3, minutes=1))
        self.assertEqual(len(sent), 4, "the cart email, then the three order emails")
        self.assertTrue(all(later - earlier >= timedelta(days=7) for earlier, later in zip(sent, sent[1:])),
                        f"at most one a week: {sent}")
        self.assertEqual(self.enrollments(self.order_sequence, self.alice).state, "done")
        # the first cart series ended with the order, the new cart was refused
        carts = self.enrollments(self.cart_sequence, self.alice).sorted("id")
        self.assertEqual(carts.mapped("exit_reason"), ["goal", "opted_out"])
        self.assertEqual(len(carts.trace_ids.filtered(lambda t: t.state == "sent")), 1)

        # the export holds both changes
        response = self.post(f"{link}/export", {}, csrf_from=link)
        self.assertEqual(response.status_code, 200)
        self.assertIn("attachment", response.headers["Content-Disposition"])
        data = json.loads(response.text)
        consents = [(c["action"], c["topic"], c["source"], c["details"]) for c in data["consents"]]
        self.assertIn(("unsubscribed", "Cart reminders", "preference_center", None), consents)
        self.assertIn(("frequency", None, "preference_center", "weekly"), consents)
        self.assertEqual(data["contact"]["frequency"], "weekly")
        self.assertEqual(len([e for e in data["emails"] if e["state"] == "sent"]), 4)
