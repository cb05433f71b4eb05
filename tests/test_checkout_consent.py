"""Consent at checkout and sign-up, and each website's policy for guests."""
import json
import re

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.tests.common import HttpCase, tagged

from .common import BehavioralCase, BehavioralCommon

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


class TestGuestPolicy(BehavioralCommon):
    """Carts of contacts created by a checkout without an account."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.start(cls, cls.cart_sequence)
        cls.guest = cls.env["res.partner"].with_context(behavioral_no_capture=True).create({
            "name": "Gina Guest", "email": "gina@example.com", "behavioral_guest_website_id": cls.website.id,
        })

    def guest_emailed(self):
        self.make_cart(self.guest)
        self.make_cart(self.alice)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.assertQueued(self.alice)
        return len(self._new_mails.filtered(lambda m: self.guest in m.recipient_ids))

    def test_checkbox_policy_refuses_guests_without_consent(self):
        self.assertEqual(self.website.behavioral_guest_policy, "checkbox")
        self.assertEqual(self.guest_emailed(), 0)
        enrollment = self.enrollments(self.cart_sequence, self.guest)
        self.assertRecordValues(enrollment, [{"state": "exited", "exit_reason": "no_consent"}])
        self.assertEqual(enrollment.trace_ids.failure_type, "no_consent")

    def test_checkbox_policy_accepts_guests_who_ticked_it(self):
        self.guest._behavioral_record_optin("checkout")
        self.assertEqual(self.guest_emailed(), 1)

    def test_never(self):
        self.website.behavioral_guest_policy = "never"
        self.guest._behavioral_record_optin("checkout")
        self.assertEqual(self.guest_emailed(), 0)

    def test_like_any_customer(self):
        self.website.behavioral_guest_policy = "any"
        self.assertEqual(self.guest_emailed(), 1)

    def test_guest_with_an_account_is_a_customer(self):
        self.env["res.users"].create({"login": "gina", "partner_id": self.guest.id,
                                      "groups_id": [(6, 0, self.env.ref("base.group_portal").ids)]})
        self.assertEqual(self.guest_emailed(), 1)

    def test_consent_checked_once_per_batch(self):
        """Refusing guests costs the same for 5 as for 25."""
        guests = self.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"Guest {i}", "email": f"guest{i}@example.com", "behavioral_guest_website_id": self.website.id}
            for i in range(30)
        ])
        guests[::2]._behavioral_record_optin("checkout")
        counts = []
        for group in (guests[:2], guests[2:7], guests[7:30]):
            count, failures = self.count_queries(self.cart_sequence._get_consent_failures, group)
            counts.append(count)
            self.assertEqual(set(failures), set((group - guests[::2]).ids))
        self.assertEqual(counts[1], counts[2], f"consent queries for 2 (warm-up), 5 and 23 guests: {counts}")


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestCheckoutAndSignupConsent(HttpCase, BehavioralCase):
    """Through website_sale's and auth_signup's own routes."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.website = cls.env["website"].browse(1)
        cls.website.behavioral_consent_checkbox = True
        cls.product = cls.env["product.product"].create({
            "name": "Seed Box", "list_price": 9.0, "sale_ok": True, "is_published": True,
            "type": "consu", "taxes_id": [(5, 0, 0)],
        })
        cls.belgium = cls.env.ref("base.be")

    def csrf(self, html):
        return CSRF_RE.search(html).group(1)

    def guest_checkout(self, email, consent):
        self.make_jsonrpc_request("/shop/cart/update_json", {"product_id": self.product.id, "add_qty": 1})
        page = self.url_open("/shop/address")
        self.assertEqual(page.status_code, 200)
        data = {
            "csrf_token": self.csrf(page.text), "address_type": "billing",
            "name": "Guest Shopper", "email": email, "phone": "+32 470 00 00 00",
            "street": "Rue de la Loi 16", "city": "Brussels", "zip": "1000", "country_id": str(self.belgium.id),
        }
        if consent:
            data["behavioral_consent"] = "1"
        response = self.url_open("/shop/address/submit", data=data)
        self.assertEqual(response.status_code, 200)
        self.assertIn("redirectUrl", json.loads(response.text), response.text)
        partner = self.env["res.partner"].search([("email", "=", email)])
        self.assertEqual(len(partner), 1)
        return page.text, partner

    def ledger(self, partner):
        return self.env["behavioral.consent"].search([("partner_id", "=", partner.id)])

    def test_guest_ticks_the_box(self):
        page, partner = self.guest_checkout("ticks@example.com", consent=True)
        self.assertIn('name="behavioral_consent"', page)
        self.assertIn("Email me reminders and offers", page)
        self.assertEqual(partner.behavioral_guest_website_id, self.website)
        self.assertRecordValues(self.ledger(partner), [{
            "action": "subscribed", "list_id": False, "source": "checkout", "user_id": False,
        }])
        self.assertTrue(self.ledger(partner).ip)

    def test_guest_leaves_it(self):
        _page, partner = self.guest_checkout("leaves@example.com", consent=False)
        self.assertEqual(partner.behavioral_guest_website_id, self.website)
        self.assertFalse(self.ledger(partner))

    def test_no_checkbox_when_the_website_does_not_ask(self):
        self.website.behavioral_consent_checkbox = False
        page, partner = self.guest_checkout("unasked@example.com", consent=True)
        self.assertNotIn('name="behavioral_consent"', page)
        self.assertFalse(self.ledger(partner))

    def test_signup(self):
        self.env["ir.config_parameter"].sudo().set_param("auth_signup.invitation_scope", "b2c")
        page = self.url_open("/web/signup")
        self.assertIn('name="behavioral_consent"', page.text)
        response = self.url_open("/web/signup", data={
            "csrf_token": self.csrf(page.text), "login": "sam@example.com", "name": "Sam Signup",
            "password": "sam-password-1", "confirm_password": "sam-password-1", "behavioral_consent": "1",
        })
        self.assertEqual(response.status_code, 200)
        user = self.env["res.users"].search([("login", "=", "sam@example.com")])
        self.assertTrue(user)
        self.assertFalse(user.partner_id.behavioral_guest_website_id)
        self.assertRecordValues(self.ledger(user.partner_id), [{"action": "subscribed", "source": "signup"}])

    def test_logged_in_customer_ticks_the_box(self):
        user = mail_new_test_user(self.env, login="cora", password="cora-password", name="Cora Customer",
                                  email="cora@example.com", groups="base.group_portal")
        user.partner_id.write({"street": "Rue Haute 1", "city": "Brussels", "zip": "1000",
                               "country_id": self.belgium.id, "phone": "+32 470 11 11 11"})
        self.authenticate("cora", "cora-password")
        self.make_jsonrpc_request("/shop/cart/update_json", {"product_id": self.product.id, "add_qty": 1})
        page = self.url_open(f"/shop/address?partner_id={user.partner_id.id}&address_type=billing")
        self.assertIn('name="behavioral_consent"', page.text)
        response = self.url_open("/shop/address/submit", data={
            "csrf_token": self.csrf(page.text), "address_type": "billing", "partner_id": str(user.partner_id.id),
            "name": "Cora Customer", "email": "cora@example.com", "phone": "+32 470 11 11 11",
            "street": "Rue Haute 1", "city": "Brussels", "zip": "1000", "country_id": str(self.belgium.id),
            "behavioral_consent": "1",
        })
        self.assertIn("redirectUrl", json.loads(response.text), response.text)
        self.assertFalse(user.partner_id.behavioral_guest_website_id)
        self.assertRecordValues(self.ledger(user.partner_id), [{"action": "subscribed", "source": "checkout"}])
