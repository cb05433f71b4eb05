"""Double opt-in: a newsletter that asks for a confirmation by email sends
nothing until its signed link is followed; unconfirmed requests expire."""
import re
from datetime import timedelta
from urllib.parse import urlparse

from freezegun import freeze_time

from .common import NOW
from .test_preference_center import PreferencePageCase

CONFIRM_RE = re.compile(r'href="([^"]*/email-preferences/confirm/\d+/[0-9a-f]+)"')


class TestDoubleOptIn(PreferencePageCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.newsletter = cls.env["mailing.list"].create({
            "name": "Garden letter", "is_public": True, "behavioral_double_opt_in": True,
            "behavioral_description": "Our monthly letter.",
        })
        # a subscribers-only sequence on that newsletter
        cls.cart_sequence.write({"consent_mode": "subscribed", "mailing_list_ids": [(6, 0, cls.newsletter.ids)]})

    def subscribe_on_the_page(self, partner):
        path = self.path(partner)
        with self.mock_mail_gateway():
            response = self.post(path, self.form(partner, changes={self.newsletter: True}), csrf_from=path)
            self.assertEqual(response.status_code, 303)
            mails = self._new_mails.filtered(lambda m: m.model == "mailing.subscription")
        self.assertEqual(len(mails), 1)
        return mails

    def confirm_path(self, mail):
        return urlparse(CONFIRM_RE.search(mail.body_html).group(1)).path

    def cart_email_count(self, partner, at):
        self.make_cart(partner, at=at)
        with self.mock_queue():
            self.run_crons(at + timedelta(hours=3))
        return len(self._new_mails.filtered(lambda m: partner in m.recipient_ids and m.model == "behavioral.enrollment"))

    def test_subscription_waits_for_confirmation(self):
        self.start(self.cart_sequence)
        mail = self.subscribe_on_the_page(self.alice)
        self.assertEqual(mail.email_to, "alice@example.com")
        self.assertIn("Garden letter", mail.subject)
        subscription = self.env["mailing.subscription"].search([
            ("list_id", "=", self.newsletter.id), ("contact_id.email_normalized", "=", "alice@example.com")])
        self.assertRecordValues(subscription, [{"opt_out": True}])
        self.assertTrue(subscription.behavioral_pending_since)
        self.assertFalse(self.ledger(self.alice), "a request is no consent yet")
        html = self.open_page(self.path(self.alice)).text
        self.assertIn("Check your inbox to confirm", html)
        # no marketing until confirmed
        self.assertEqual(self.cart_email_count(self.alice, NOW), 0)
        self.assertEqual(self.enrollments(self.cart_sequence, self.alice).exit_reason, "opted_out")

        # the link: a page with a button (a mail scanner following it confirms nothing)
        path = self.confirm_path(mail)
        page = self.open_page(path).text
        self.assertIn("Confirm my subscription", page)
        self.assertTrue(subscription.opt_out)
        response = self.post(path, {}, csrf_from=path)
        self.assertEqual(response.status_code, 200)
        self.assertIn("you are subscribed to", response.text)
        self.assertRecordValues(subscription, [{"opt_out": False, "behavioral_pending_since": False}])
        self.assertRecordValues(self.ledger(self.alice), [{
            "action": "confirmed", "list_id": self.newsletter.id, "source": "double_opt_in",
        }])
        self.assertEqual(self.cart_email_count(self.alice, self.later(days=1)), 1)
        # the link served once
        self.assertEqual(self.url_open(path).status_code, 404)

    def test_bad_confirmation_links(self):
        mail = self.subscribe_on_the_page(self.alice)
        path = self.confirm_path(mail)
        subscription_id = int(path.split("/")[-2])
        token = path.split("/")[-1]
        bob_mail = self.subscribe_on_the_page(self.bob)
        bob_token = self.confirm_path(bob_mail).split("/")[-1]
        tampered = token[:-1] + ("1" if token.endswith("0") else "0")
        for bad in (
            f"/email-preferences/confirm/{subscription_id}/{tampered}",
            f"/email-preferences/confirm/{subscription_id}/{bob_token}",
            f"/email-preferences/confirm/999999999/{token}",
            f"/email-preferences/confirm/99999999999/{token}",
        ):
            self.assertEqual(self.url_open(bad).status_code, 404, bad)
            self.assertEqual(self.post(bad, {}).status_code, 404, bad)
        self.assertEqual(self.post(path, {"confirm": "1"}, csrf=False).status_code, 400, "no CSRF token")
        self.assertTrue(self.env["mailing.subscription"].browse(subscription_id).opt_out)
        self.assertFalse(self.env["behavioral.consent"].search([("action", "=", "confirmed")]))

    def test_unconfirmed_requests_expire(self):
        mail = self.subscribe_on_the_page(self.alice)
        subscription = self.env["mailing.subscription"].browse(int(self.confirm_path(mail).split("/")[-2]))
        subscription.behavioral_pending_since = NOW
        path = urlparse(subscription.behavioral_confirm_url).path
        with freeze_time(NOW + timedelta(days=6)):
            self.env["mailing.subscription"]._cron_behavioral_expire_pending()
        self.assertTrue(subscription.behavioral_pending_since, "not yet")
        with freeze_time(NOW + timedelta(days=7, minutes=1)):
            self.env["mailing.subscription"]._cron_behavioral_expire_pending()
        self.assertRecordValues(subscription, [{"opt_out": True, "behavioral_pending_since": False}])
        self.assertEqual(self.url_open(path).status_code, 404)
        self.assertFalse(self.ledger(self.alice))

    def test_link_older_than_the_expiry_says_so(self):
        """Followed before the cron went by: the page says the link expired."""
        mail = self.subscribe_on_the_page(self.alice)
        subscription = self.env["mailing.subscription"].browse(int(self.confirm_path(mail).split("/")[-2]))
        subscription.behavioral_pending_since = "2000-01-01 00:00:00"
        path = urlparse(subscription.behavioral_confirm_url).path
        response = self.url_open(path)
        self.assertEqual(response.status_code, 410)
        self.assertIn("This link has expired", response.text)
        self.assertEqual(self.post(path, {}, csrf_from=self.path(self.alice)).status_code, 410)
        self.assertTrue(subscription.opt_out)

    def test_staff_subscriptions_need_no_confirmation(self):
        contact = self.env["mailing.contact"].with_context(behavioral_consent_source="backend").create({
            "name": "Carol", "email": "carol@example.com",
            "subscription_ids": [(0, 0, {"list_id": self.newsletter.id})],
        })
        self.assertFalse(contact.subscription_ids.opt_out)
        self.assertEqual(self.ledger(self.carol).action, "subscribed")
