"""Trigger kind ``newsletter_subscribed``: a contact subscribes to a mailing
list, from the website, the preference page or the back office."""
from datetime import timedelta

from freezegun import freeze_time
from lxml import html

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.tests.common import HttpCase, tagged

from .common import NOW, BehavioralCommon


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestNewsletterSubscribed(HttpCase, BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.newsletter, cls.offers = cls.env["mailing.list"].create([
            {"name": "Garden Newsletter", "is_public": True},
            {"name": "Seasonal Offers", "is_public": True},
        ])
        cls.sequence = cls.env.ref("behavioral_email.sequence_newsletter")
        cls.sequence.write({"state": "draft"})

    def triggers(self, partner=None):
        domain = [("trigger_type", "=", "newsletter_subscribed")]
        if partner:
            domain.append(("partner_id", "=", partner.id))
        return self.env["behavioral.trigger"].search(domain)

    def subscribe(self, name, email, lists, at=NOW):
        """A contact added to lists in the back office (list_ids)."""
        with freeze_time(at):
            return self.env["mailing.contact"].create({
                "name": name, "email": email, "list_ids": [(4, mlist.id) for mlist in lists]})

    def test_back_office_subscription_welcomes_once(self):
        self.start(self.sequence)
        contact = self.subscribe("Alice Customer", "alice@example.com", self.newsletter)
        trigger = self.triggers()
        self.assertRecordValues(trigger, [{
            "partner_id": self.alice.id, "res_model": "mailing.subscription",
            "res_id": self.env["mailing.subscription"].search([("contact_id", "=", contact.id)]).id,
            "occurred_at": NOW, "state": "new",
        }])
        self.assertEqual(trigger.payload["list_name"], "Garden Newsletter")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        mail = self.assertQueued(self.alice, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(mail.subject, "Welcome to our newsletter")
        root = html.fromstring(mail.body_html)
        paragraphs = [" ".join(p.text_content().split()) for p in root.iter("p")]
        self.assertEqual(paragraphs[:2], [
            "Hi Alice Customer,",
            "Thank you for subscribing to Garden Newsletter. You will be the first to hear about new "
            "products, seasonal tips and offers.",
        ])
        self.assertIn("<strong>Garden Newsletter</strong>", mail.body_html)
        [button] = root.xpath("//a[normalize-space(.) = 'Visit the shop']")
        self.assertEqual(self.tracked_url(button.get("href")), f"{self.sequence.get_base_url()}/shop")
        # the footer: the shop, its preferences and unsubscribe links
        self.assertTrue(root.xpath("//a[normalize-space(.) = 'Manage preferences']"))
        self.assertIn("/unsubscribe_from_list", mail.body_html)

        # a second list: a trigger of its own, but one welcome per customer
        with freeze_time(NOW + timedelta(hours=1)):
            contact.write({"list_ids": [(4, self.offers.id)]})
        self.assertEqual(len(self.triggers()), 2)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1, minutes=1))
            self.run_crons(NOW + timedelta(days=1))
        self.assertFalse(self._new_mails, "no second welcome, and rerunning the crons adds nothing")
        self.assertIn("already enrolled", self.triggers()[0].state_msg)

    def test_every_back_office_path_is_captured_once(self):
        with freeze_time(NOW):
            # a subscription record (the form's subscription lines)
            bob = self.env["mailing.contact"].create({
                "name": "Bob", "email": "bob@example.com",
                "subscription_ids": [(0, 0, {"list_id": self.newsletter.id})]})
            # the list side (the "Add to mailing list" wizard)
            carol = self.env["mailing.contact"].create({"name": "Carol", "email": "carol@example.com"})
            self.env["mailing.contact.to.list"].create({
                "contact_ids": [(6, 0, carol.ids)], "mailing_list_id": self.offers.id,
            }).action_add_contacts()
            # a contact created from a list's contacts view (default_list_ids)
            self.env["mailing.contact"].with_context(default_list_ids=[self.newsletter.id]).create(
                {"name": "Alice", "email": "alice@example.com"})
        self.assertEqual(len(self.triggers(self.bob)), 1)
        self.assertEqual(self.triggers(self.carol).payload["list_id"], self.offers.id)
        self.assertEqual(self.triggers(self.alice).payload["list_id"], self.newsletter.id)
        self.assertEqual(len(self.triggers()), 3)
        self.assertFalse(bob.subscription_ids.opt_out)

    def test_not_captured_opted_out_or_imported(self):
        with freeze_time(NOW):
            self.env["mailing.contact"].create({
                "name": "Bob", "email": "bob@example.com",
                "subscription_ids": [(0, 0, {"list_id": self.newsletter.id, "opt_out": True})]})
            self.env["mailing.contact.import"].create({
                "mailing_list_ids": [(4, self.newsletter.id)],
                "contact_list": "Imported One <imported.one@example.com>\nimported.two@example.com",
            }).action_import()
        self.assertEqual(self.env["mailing.contact"].search_count([("email", "like", "imported")]), 2)
        self.assertFalse(self.triggers())
        self.assertFalse(self.env["res.partner"].search([("email", "like", "imported")]))

    def test_unknown_address_gets_a_contact_never_the_public_one(self):
        self.public_partner.email = "shop.public@example.com"
        self.start(self.sequence)
        self.subscribe("Dora", "shop.public@example.com", self.newsletter)
        self.subscribe("Eve New", "Eve New <eve.new@example.com>", self.newsletter)
        partners = self.triggers().partner_id
        self.assertEqual(len(partners), 2)
        self.assertNotIn(self.public_partner, partners)
        eve = partners.filtered(lambda p: p.email_normalized == "eve.new@example.com")
        self.assertEqual(eve.name, "Eve New")
        self.assertFalse(self.env["behavioral.trigger"].search([
            ("trigger_type", "=", "partner_created"), ("partner_id", "in", partners.ids)]),
            "the subscription is the signal, not a new-contact one")
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(eve, sequence=self.sequence)
        self.assertEqual(len(self._new_mails), 2)
        self.assertNotIn(self.public_partner, self._new_mails.recipient_ids)

    def test_resubscribe_from_the_preference_page(self):
        """A customer opted out subscribes again on mass_mailing's own page."""
        user = mail_new_test_user(
            self.env, login="reader", password="reader_pwd_1", name="Rita Reader",
            email="rita@example.com", groups="base.group_portal")
        self.sequence.reentry = "document"
        self.start(self.sequence)
        contact = self.subscribe("Rita Reader", "rita@example.com", self.newsletter)
        self.assertEqual(self.triggers().partner_id, user.partner_id)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(user.partner_id)
        contact.subscription_ids.opt_out = True
        self.assertEqual(len(self.triggers()), 1, "an opt-out is no subscription")

        self.authenticate("reader", "reader_pwd_1")
        with freeze_time(NOW + timedelta(days=2)):
            self.make_jsonrpc_request("/mailing/list/update", {"lists_optin_ids": [self.newsletter.id]})
        self.assertFalse(contact.subscription_ids.opt_out)
        self.assertEqual(len(self.triggers()), 2)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=2, minutes=1))
        self.assertFalse(self._new_mails, "once per subscription (re-entry rule)")

    def test_website_form_subscription(self):
        if "website_mass_mailing" not in self.env.registry._init_modules:
            self.skipTest("website_mass_mailing is not installed")
        self.start(self.sequence)
        with freeze_time(NOW):
            self.make_jsonrpc_request("/website_mass_mailing/subscribe", {
                "list_id": self.newsletter.id, "value": "web.visitor@example.com", "subscription_type": "email",
            })
        trigger = self.triggers()
        self.assertEqual(len(trigger), 1)
        self.assertEqual(trigger.partner_id.email, "web.visitor@example.com")
        self.assertFalse(trigger.partner_id.user_ids)
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertQueued(trigger.partner_id, sequence=self.sequence)

    def test_unsubscribed_before_the_email_gets_nothing(self):
        self.sequence.step_ids.delay_value = 1
        self.start(self.sequence)
        contact = self.subscribe("Alice Customer", "alice@example.com", self.newsletter)
        self.run_crons(NOW + timedelta(minutes=1))
        contact.subscription_ids.opt_out = True
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1, minutes=1))
        self.assertFalse(self._new_mails)
        self.assertEqual(self.enrollments(self.sequence, self.alice).trace_ids.state, "skipped")

    def test_no_email_for_blocklisted_old_or_goal_met(self):
        self.sequence.goal = "order_placed"
        self.start(self.sequence)
        self.env["mail.blacklist"]._add("bob@example.com")
        self.subscribe("Bob", "bob@example.com", self.newsletter)
        self.subscribe("Carol", "carol@example.com", self.newsletter, at=NOW - timedelta(days=4))
        self.subscribe("Alice", "alice@example.com", self.newsletter)
        order = self.env["sale.order"].create({
            "partner_id": self.alice.id,
            "order_line": [(0, 0, {"product_id": self.pot.id, "product_uom_qty": 1})],
        })
        self.confirm(order, NOW + timedelta(seconds=30))
        with self.mock_queue():
            self.run_crons(NOW + timedelta(minutes=1))
        self.assertFalse(self._new_mails)
        self.assertRecordValues(self.enrollments(self.sequence, self.bob), [{
            "state": "exited", "exit_reason": "blacklisted"}])
        self.assertIn("older than the entry window", self.triggers(self.carol).state_msg)
        self.assertIn("goal already reached", self.triggers(self.alice).state_msg)
        self.assertFalse(self.enrollments(self.sequence, self.alice) | self.enrollments(self.sequence, self.carol))
