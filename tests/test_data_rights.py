"""Download my data and delete my data, from the preference page."""
import json

from odoo.exceptions import AccessError
from odoo.tools import SQL

from .test_preference_center import PreferencePageCase


class TestDataRights(PreferencePageCase):

    def setUp(self):
        """Alice's history: a cart email queued, opened and clicked, the cart
        ordered, a frequency chosen on the page, a website visitor."""
        super().setUp()
        self.start(self.cart_sequence)
        self.cart = self.make_cart(self.alice)
        self.make_cart(self.bob)
        with self.mock_queue():
            self.run_crons(self.later(hours=3))
        self.mail = self.assertQueued(self.alice)
        self.assertQueued(self.bob)
        self.trace = self.mail.mailing_trace_ids
        self.trace.set_opened()
        tracker = self.env["link.tracker"].search([("url", "like", f"access_token={self.cart.access_token}")])
        self.env["link.tracker.click"].sudo().create({
            "link_id": tracker.id, "mailing_trace_id": self.trace.id, "ip": "203.0.113.7"})
        self.trace.set_clicked()
        self.confirm(self.cart, self.later(hours=5))
        self.run_crons(self.later(hours=5, minutes=1))
        self.alice.behavioral_birthday = "1990-06-15"
        path = self.path(self.alice)
        self.post(path, self.form(self.alice, "weekly"), csrf_from=path)
        self.visitor = self.env["website.visitor"].create({
            "access_token": str(self.alice.id), "website_id": self.website.id})
        self.assertEqual(self.visitor.partner_id, self.alice)

    def test_download_my_data(self):
        path = self.path(self.alice)
        response = self.post(f"{path}/export", {}, csrf_from=path)
        self.assertEqual(response.status_code, 200)
        self.assertEqual(response.headers["Content-Type"], "application/json; charset=utf-8")
        self.assertIn('filename="my-email-data.json"', response.headers["Content-Disposition"])
        data = json.loads(response.text)
        self.assertEqual(data["contact"]["email"], "alice@example.com")
        self.assertEqual(data["contact"]["frequency"], "weekly")
        self.assertEqual(data["contact"]["birthday"], "1990-06-15")
        self.assertIn({"topic": "Cart reminders", "subscribed": True, "awaiting_confirmation": False},
                      data["topics"])
        self.assertEqual([(c["action"], c["source"], c["details"]) for c in data["consents"]],
                         [("frequency", "preference_center", "weekly")])
        self.assertTrue(data["consents"][0]["date"])
        [enrollment] = data["enrollments"]
        self.assertEqual((enrollment["sequence"], enrollment["state"], enrollment["exit_reason"]),
                         ("Abandoned cart recovery", "exited", "goal"))
        [email] = data["emails"]
        self.assertEqual(email["subject"], "You left something in your cart")
        self.assertEqual(email["date"], "2026-03-02 12:00:00")
        self.assertTrue(email["opened"])
        self.assertEqual(len(email["clicks"]), 1)
        self.assertIn(f"access_token={self.cart.access_token}", email["clicks"][0]["url"])
        self.assertEqual(data["attributed_orders"], [{
            "order": self.cart.name, "date": "2026-03-02 14:00:00",
            "amount": self.cart.amount_total, "currency": self.cart.currency_id.name,
        }])
        self.assertNotIn("bob@example.com", response.text)

    def test_delete_my_data(self):
        path = self.path(self.alice)
        enrollment = self.enrollments(self.cart_sequence, self.alice)
        bob_enrollment = self.enrollments(self.cart_sequence, self.bob)
        mailing_trace = self.trace
        self.assertEqual(self.mail.state, "outgoing")
        response = self.post(f"{path}/delete", {"confirm": "1"}, csrf_from=f"{path}/delete")
        self.assertEqual(response.status_code, 200)
        self.assertIn("Your data is deleted", response.text)

        # nothing personal is left in the addon's tables
        self.env.invalidate_all()
        cr = self.env.cr
        for table in ("behavioral_trigger", "behavioral_enrollment", "behavioral_trace", "behavioral_consent"):
            cr.execute(SQL("SELECT count(*) FROM %s t WHERE t::text ILIKE %s", SQL.identifier(table), "%alice%"))
            self.assertEqual(cr.fetchone()[0], 0, table)
            cr.execute(SQL("SELECT count(*) FROM %s WHERE partner_id = %s", SQL.identifier(table), self.alice.id))
            self.assertEqual(cr.fetchone()[0], 0, table)
        self.assertFalse(enrollment.exists())
        self.assertFalse(self.mail.exists(), "the queued email is canceled")
        self.assertFalse(mailing_trace.email)
        self.assertFalse(mailing_trace.links_click_ids.ip)
        self.assertFalse(self.visitor.exists())
        self.assertFalse(self.env["mailing.contact"].search([("email_normalized", "=", "alice@example.com")]))
        self.assertRecordValues(self.alice, [{
            "behavioral_frequency": "all", "behavioral_pause_until": False, "behavioral_guest_website_id": False,
            "behavioral_birthday": False,
        }])
        # what the law needs to go on refusing marketing: the blocklist entry, a hashed address
        self.assertTrue(self.env["mail.blacklist"].search([("email", "=", "alice@example.com")]).active)
        rows = self.env["behavioral.consent"].search([("erased", "=", True)])
        self.assertEqual(sorted(rows.mapped("action")), ["blocklisted", "frequency"])
        self.assertEqual(set(rows.mapped("email_hash")), {self.env["behavioral.consent"]._hash_email("alice@example.com")})
        self.assertFalse(any(rows.mapped("ip")) or any(rows.mapped("user_agent")) or any(rows.mapped("email")))
        # Bob's data is untouched, the order itself stays
        self.assertTrue(bob_enrollment.exists())
        self.assertEqual(self.cart.state, "sale")
        # and Alice gets no more marketing email
        self.make_cart(self.alice, at=self.later(days=1))
        with self.mock_queue():
            self.run_crons(self.later(days=1, hours=3))
        self.assertQueued(self.alice, count=0)

    def test_erasure_from_the_back_office(self):
        with self.assertRaises(AccessError):
            self.alice.with_user(self.user_marketing).action_behavioral_erase()
        self.assertTrue(self.enrollments(self.cart_sequence, self.alice))
        self.alice.action_behavioral_erase()
        self.assertFalse(self.enrollments(self.cart_sequence, self.alice))
        self.assertTrue(self.enrollments(self.cart_sequence, self.bob))
