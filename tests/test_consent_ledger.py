"""The consent ledger: one row per change of a person's marketing consent,
whatever the path (Odoo's own unsubscribe routes and one-click, the back
office, the blocklist, subscriptions, imports), append-only."""
from urllib.parse import urlparse

from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import AccessError, UserError
from odoo.tests.common import users

from .common import NOW, BehavioralCommon
from .test_preference_center import PreferencePageCase


class TestLedgerFromTheModels(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.topic_cart = cls.env.ref("behavioral_email.mailing_list_topic_cart")
        cls.newsletter = cls.env["mailing.list"].create({"name": "Garden news", "is_public": True})
        cls.Consent = cls.env["behavioral.consent"]

    def rows(self, **filters):
        domain = [(key, "=", value) for key, value in filters.items()]
        return self.Consent.search(domain, order="id")

    def test_blocklist_add_and_remove(self):
        with freeze_time(NOW):
            self.env["mail.blacklist"]._add("Alice <ALICE@example.com>")
            self.env["mail.blacklist"]._add("alice@example.com")  # already there: no change
        with freeze_time(self.later(hours=1)):
            self.env["mail.blacklist"]._remove("alice@example.com")
            self.env["mail.blacklist"]._remove("alice@example.com")
        self.assertRecordValues(self.rows(email="alice@example.com"), [
            {"action": "blocklisted", "partner_id": self.alice.id, "list_id": False, "source": "api", "date": NOW},
            {"action": "unblocklisted", "partner_id": self.alice.id, "list_id": False, "source": "api",
             "date": self.later(hours=1)},
        ])
        self.assertTrue(self.rows(email="alice@example.com").mapped("email_hash")[0])

    def test_blocklist_record_deleted_or_archived_from_the_list(self):
        entry = self.env["mail.blacklist"].create({"email": "bob@example.com"})
        entry.action_archive()
        entry.action_unarchive()
        entry.unlink()
        self.assertEqual(self.rows(partner_id=self.bob.id).mapped("action"),
                         ["blocklisted", "unblocklisted", "blocklisted", "unblocklisted"])

    def test_subscriptions(self):
        contact = self.env["mailing.contact"].create({
            "name": "Carol", "email": "carol@example.com",
            "subscription_ids": [(0, 0, {"list_id": self.newsletter.id})],
        })
        contact.subscription_ids.opt_out = True
        contact.subscription_ids.write({"opt_out": True})  # no change, no row
        contact.subscription_ids.opt_out = False
        # through the contact's lists (the relation table, not the subscription model)
        contact.list_ids = [(4, self.topic_cart.id)]  # a topic: received already, no change
        contact.list_ids = [(3, self.newsletter.id)]
        self.assertRecordValues(self.rows(partner_id=self.carol.id), [
            {"action": "subscribed", "list_id": self.newsletter.id},
            {"action": "unsubscribed", "list_id": self.newsletter.id},
            {"action": "subscribed", "list_id": self.newsletter.id},
            {"action": "unsubscribed", "list_id": self.newsletter.id},
        ])

    def test_topic_opt_out_then_row_removed(self):
        """For a topic, no row means received: deleting an opt-out subscribes."""
        contact = self.env["mailing.contact"].create({
            "name": "Bob", "email": "bob@example.com",
            "subscription_ids": [(0, 0, {"list_id": self.topic_cart.id, "opt_out": True})],
        })
        contact.unlink()
        self.assertEqual(self.rows(partner_id=self.bob.id).mapped("action"), ["unsubscribed", "subscribed"])

    def test_frequency_and_pause_from_the_back_office(self):
        self.alice.with_context(behavioral_consent_source="backend").write({
            "behavioral_frequency": "monthly", "behavioral_pause_until": "2026-04-01"})
        self.alice.with_context(behavioral_consent_source="backend").behavioral_pause_until = False
        self.assertRecordValues(self.rows(partner_id=self.alice.id), [
            {"action": "frequency", "details": "monthly", "source": "backend", "user_id": self.env.uid},
            {"action": "paused", "details": "2026-04-01", "source": "backend", "user_id": self.env.uid},
            {"action": "resumed", "details": False, "source": "backend", "user_id": self.env.uid},
        ])

    def test_import(self):
        self.env["mail.blacklist"].with_context(import_file=True).create([{"email": "carol@example.com"}])
        self.assertEqual(self.rows(partner_id=self.carol.id).source, "import")

    def test_append_only(self):
        self.env["mail.blacklist"]._add("alice@example.com")
        row = self.rows(partner_id=self.alice.id)
        with self.assertRaises(UserError):
            row.sudo().write({"action": "subscribed"})
        with self.assertRaises(UserError):
            row.sudo().unlink()

    @users("marketer")
    def test_staff_reads_but_never_writes(self):
        self.env["mail.blacklist"].sudo()._add("alice@example.com")
        row = self.env["behavioral.consent"].search([("partner_id", "=", self.alice.id)])
        self.assertEqual(row.action, "blocklisted")
        with self.assertRaises(AccessError):
            self.env["behavioral.consent"].create({"email": "x@example.com", "action": "subscribed", "source": "api"})

    def test_contact_form_shows_the_history(self):
        arch = self.env["res.partner"].with_user(self.user_marketing).get_views([(False, "form")])
        self.assertIn("behavioral_consent_ids", arch["views"]["form"]["arch"])


class TestLedgerOverHttp(PreferencePageCase):
    """Odoo's own routes write the ledger too, with their source and request."""

    def send_first_cart_email(self, partner):
        self.start(self.cart_sequence)
        self.make_cart(partner)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
            mail = self.assertQueued(partner)
            mail.send()
        self.assertEqual(len(self._mails), 1)
        return self._mails[0]

    def test_one_click_unsubscribe(self):
        """RFC 8058: the List-Unsubscribe URL of a real sequence email, posted
        as a mail client does."""
        sent = self.send_first_cart_email(self.alice)
        url = urlparse(sent["headers"]["List-Unsubscribe"].strip("<>"))
        response = self.url_open(f"{url.path}?{url.query}", data={"List-Unsubscribe": "One-Click"},
                                 headers={"User-Agent": "Mail client/1.0"})
        self.assertEqual(response.status_code, 200)
        self.assertRecordValues(self.ledger(self.alice), [{
            "action": "blocklisted", "source": "one_click", "email": "alice@example.com",
            "list_id": False, "user_id": False, "user_agent": "Mail client/1.0",
        }])
        self.assertTrue(self.ledger(self.alice).ip)

    def test_unsubscribe_page(self):
        """The unsubscribe link of the email body, opened in a browser."""
        sent = self.send_first_cart_email(self.alice)
        mailing = self.cart_sequence.step_ids.sorted()[0].mailing_id
        link = next(part for part in sent["body"].split('"') if f"/mailing/{mailing.id}/confirm_unsubscribe" in part)
        url = urlparse(link.replace("&amp;", "&"))
        response = self.url_open(f"/mailing/{mailing.id}/unsubscribe?{url.query}")
        self.assertEqual(response.status_code, 200)
        self.assertRecordValues(self.ledger(self.alice), [{"action": "blocklisted", "source": "unsubscribe_page"}])

    def test_mailing_subscription_page_of_a_portal_user(self):
        """mass_mailing's /mailing/my page updates lists through /mailing/list/update."""
        portal = mail_new_test_user(self.env, login="ledger_portal", password="ledger_portal",
                                    name="Lea Portal", email="lea@example.com", groups="base.group_portal")
        newsletter = self.env["mailing.list"].create({"name": "Garden news", "is_public": True})
        self.env["mailing.contact"].create({
            "name": "Lea", "email": "lea@example.com",
            "subscription_ids": [(0, 0, {"list_id": newsletter.id}), (0, 0, {"list_id": self.topic_cart.id})],
        })
        self.authenticate("ledger_portal", "ledger_portal")
        self.assertEqual(self.url_open("/mailing/my").status_code, 200)
        self.make_jsonrpc_request("/mailing/list/update", {"lists_optin_ids": [newsletter.id]})
        self.assertRecordValues(self.ledger(portal.partner_id)[-1:], [{
            "action": "unsubscribed", "list_id": self.topic_cart.id, "source": "unsubscribe_page", "user_id": False,
        }])

    def test_back_office_change(self):
        """A staff member changes a customer's frequency in the contact form."""
        self.authenticate("admin", "admin")
        self.make_jsonrpc_request("/web/dataset/call_kw/res.partner/web_save", {
            "model": "res.partner", "method": "web_save",
            "args": [[self.bob.id], {"behavioral_frequency": "weekly"}],
            "kwargs": {"specification": {"behavioral_frequency": {}}},
        })
        admin = self.env.ref("base.user_admin")
        self.assertRecordValues(self.ledger(self.bob).filtered(lambda r: r.action == "frequency"), [{
            "action": "frequency", "details": "weekly", "source": "backend", "user_id": admin.id,
        }])
