"""Trigger kind date_anniversary: birthdays, first-order anniversaries and
any date of a contact or an order, detected at frozen dates."""
from datetime import date, datetime, timedelta

from freezegun import freeze_time
from lxml import html

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import ValidationError
from odoo.http import Request
from odoo.tests.common import HttpCase, tagged

from .common import NOW, BehavioralCommon

# NOW is 2026-03-02 09:00, a common year


class TestDateAnniversary(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.birthday = cls.env.ref("behavioral_email.sequence_birthday")
        cls.first_order = cls.env.ref("behavioral_email.sequence_first_order_anniversary")
        (cls.birthday | cls.first_order).write({"state": "draft"})

    def _customers(self, prefix, birthdays):
        return self.env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": f"{prefix} {i}", "email": f"{prefix.lower()}{i}@example.com", "behavioral_birthday": day}
            for i, day in enumerate(birthdays)
        ])

    def _triggers(self, sequence=None):
        triggers = self.env["behavioral.trigger"].search([("trigger_type", "=", "date_anniversary")])
        if sequence:
            triggers = triggers.filtered(lambda t: t.payload["sequence_id"] == sequence.id)
        return triggers

    def order(self, partner, at):
        order = self.env["sale.order"].create({
            "partner_id": partner.id,
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        })
        self.confirm(order, at)
        return order

    def test_happy_birthday(self):
        self.assertEqual(self.birthday.source_model, "res.partner")
        self.alice.behavioral_birthday = date(1990, 3, 2)
        self.bob.behavioral_birthday = date(1985, 3, 3)
        dora, eve = self._customers("Born", [date(1992, 3, 2), date(1990, 2, 27)])
        self.env["mail.blacklist"]._add(dora.email)
        self.public_partner.write({"email": "public@example.com", "behavioral_birthday": date(1990, 3, 2)})
        self.start(self.birthday)

        with self.mock_queue():
            self.run_crons(NOW)
        mail = self.assertQueued(self.alice, sequence=self.birthday)
        self.assertEqual(mail.subject, "Happy birthday from Garden Shop!")
        root = html.fromstring(mail.body_html)
        self.assertEqual([" ".join(p.text_content().split()) for p in root.iter("p")][:2], [
            "Hi Alice Customer,", "The whole team at Garden Shop wishes you a very happy birthday!"])
        [button] = root.xpath("//a[normalize-space(.) = 'Treat yourself']")
        self.assertEqual(self.tracked_url(button.get("href")),
                         f"{self.birthday.get_base_url()}/shop")
        self.assertEqual(len(self._new_mails), 1, "not Bob (tomorrow), Eve (days ago), Dora (blocklisted), public")
        self.assertRecordValues(self.enrollments(self.birthday, dora), [{"state": "exited", "exit_reason": "blacklisted"}])
        self.assertEqual(self._triggers().partner_id, self.alice | dora)
        trigger = self._triggers().filtered(lambda t: t.partner_id == self.alice)
        self.assertRecordValues(trigger, [{
            "res_model": "res.partner", "res_id": self.alice.id, "occurred_at": datetime(2026, 3, 2)}])
        self.assertEqual(trigger.payload["years"], 36)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=1))
            self.run_crons(NOW + timedelta(days=1))
        self.assertQueued(self.bob, sequence=self.birthday)
        self.assertEqual(len(self._new_mails), 1, "Bob the next day, and nobody twice")
        self.assertQueued(eve, count=0)

        # a year later, again
        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=365))
        self.assertQueued(self.alice, sequence=self.birthday)
        self.assertEqual(len(self.enrollments(self.birthday, self.alice)), 2)
        self.assertEqual(
            sorted(self._triggers().filtered(lambda t: t.partner_id == self.alice).mapped("dedupe_key")),
            [f"date_anniversary:{self.birthday.id}:res.partner.behavioral_birthday:{self.alice.id}:{year}"
             for year in (2026, 2027)])

    def test_february_29(self):
        """Born on February 29: greeted on February 28 in common years, on
        the 29th in leap years, once."""
        (leapling,) = self._customers("Leap", [date(2000, 2, 29)])
        self.alice.behavioral_birthday = date(1990, 2, 28)
        self.start(self.birthday, at=datetime(2026, 2, 27))
        with self.mock_queue():
            self.run_crons(datetime(2026, 2, 28, 9, 0))
            self.run_crons(datetime(2026, 3, 1, 9, 0))
        self.assertQueued(leapling, sequence=self.birthday)
        self.assertQueued(self.alice, sequence=self.birthday)
        self.assertEqual(len(self._new_mails), 2)

        with self.mock_queue():
            self.run_crons(datetime(2028, 2, 28, 9, 0))
        self.assertQueued(self.alice, sequence=self.birthday)
        self.assertQueued(leapling, count=0)
        with self.mock_queue():
            self.run_crons(datetime(2028, 2, 29, 9, 0))
            self.run_crons(datetime(2028, 3, 1, 9, 0))
        self.assertQueued(leapling, sequence=self.birthday)
        self.assertEqual(len(self._new_mails), 1)

    def test_first_order_anniversary(self):
        """On the day of their first order, a year or more later; with an
        order goal, a customer who already ordered that day is left alone."""
        self.first_order.goal = "order_placed"
        first = self.order(self.alice, datetime(2025, 3, 2, 10, 0))
        self.order(self.alice, datetime(2025, 6, 1, 10, 0))
        self.order(self.bob, datetime(2026, 3, 2, 7, 0))  # first order today: no anniversary yet
        self.order(self.carol, datetime(2024, 3, 2, 15, 0))
        self.order(self.carol, datetime(2026, 3, 2, 8, 0))  # ordered again this morning: goal met
        (dora,) = self._customers("Loyal", [False])
        self.order(dora, datetime(2023, 3, 2, 15, 0))
        self.assertEqual(self.alice.behavioral_first_order_date, first.date_order)
        self.assertEqual(self.carol.behavioral_first_order_date, datetime(2024, 3, 2, 15, 0))
        self.start(self.first_order)

        with self.mock_queue():
            self.run_crons(NOW)
        alice_mail = self.assertQueued(self.alice, sequence=self.first_order)
        self.assertEqual(alice_mail.subject, "Happy anniversary from Garden Shop")
        for mail, greeting, since in ((alice_mail, "Hi Alice Customer,", "One year ago today"),
                                      (self.assertQueued(dora, sequence=self.first_order),
                                       "Hi Loyal 0,", "3 years ago today")):
            root = html.fromstring(mail.body_html)
            self.assertEqual([" ".join(p.text_content().split()) for p in root.iter("p")][:2], [
                greeting, f"{since}, you placed your first order with us. Thank you for your trust since then!"])
            self.assertTrue(root.xpath("//a[normalize-space(.) = 'Visit the shop']"))
        self.assertQueued(self.bob, count=0)
        self.assertQueued(self.carol, count=0)
        self.assertEqual(len(self._new_mails), 2)
        carol_trigger = self._triggers().filtered(lambda t: t.partner_id == self.carol)
        self.assertIn("goal already reached", carol_trigger.state_msg)

        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=2))
        self.assertFalse(self._new_mails)

    def test_days_before_an_order_date(self):
        """Any date field of an order, N days before, once: three days
        before a quotation expires. The source filter applies in detection."""
        expiring = self.env["behavioral.sequence"].create({
            "name": "Your quotation expires soon",
            "trigger_type": "date_anniversary",
            "anniversary_model": "sale.order",
            "anniversary_field_id": self.env.ref("sale.field_sale_order__validity_date").id,
            "anniversary_offset_days": 3,
            "anniversary_offset_direction": "before",
            "anniversary_recurrence": "once",
            "filter_domain": "[('state', 'in', ('draft', 'sent'))]",
            "step_ids": [(0, 0, {
                "subject": "Your quotation {{ object.order_id.name }} expires soon",
                "body_html": "<p>Quotation <t t-out='object.order_id.name'/> is valid until "
                             "<t t-out=\"object.payload['date']\"/>.</p>",
                "delay_value": 0, "delay_unit": "hours",
            })],
        })
        self.assertEqual(expiring.source_model, "sale.order")
        quotations = self.env["sale.order"].create([{
            "partner_id": partner.id,
            "validity_date": date(2026, 3, 5),
            "order_line": [(0, 0, {"product_id": self.tree.id, "product_uom_qty": 1})],
        } for partner in (self.alice, self.bob, self.carol)])
        quotations[2].validity_date = date(2026, 3, 6)
        self.confirm(quotations[1], NOW - timedelta(days=1))  # ordered: not a quotation any more
        self.start(expiring)

        with self.mock_queue():
            self.run_crons(NOW)
        mail = self.assertQueued(self.alice, sequence=expiring)
        self.assertEqual(mail.subject, f"Your quotation {quotations[0].name} expires soon")
        self.assertIn("is valid until 2026-03-05", mail.body_html)
        self.assertEqual(len(self._new_mails), 1)
        self.assertEqual(self._triggers().res_id, quotations[0].id, "no trigger for the confirmed order")

        with self.mock_queue():
            self.run_crons(NOW + timedelta(days=1))
            self.run_crons(NOW + timedelta(days=400))
        self.assertQueued(self.carol, sequence=expiring)
        self.assertEqual(len(self._new_mails), 1, "once: not again a year later")

    def test_date_field_must_be_a_date_of_the_model(self):
        values = {"name": "Bad", "trigger_type": "date_anniversary", "anniversary_model": "res.partner"}
        for field in ("base.field_res_partner__name", "sale.field_sale_order__validity_date"):
            with self.assertRaises(ValidationError):
                self.env["behavioral.sequence"].create(dict(values, anniversary_field_id=self.env.ref(field).id))
        with self.assertRaises(ValidationError):
            self.env["behavioral.sequence"].create(values)
        with self.assertRaises(ValidationError):
            self.birthday.anniversary_model = "sale.order"

    def test_detection_queries(self):
        """Detection is one statement per sequence whatever the number of
        birthdays."""
        self.start(self.birthday)
        counts = []
        for index, size in enumerate((1, 2, 20)):
            day = NOW + timedelta(days=index)
            self._customers(f"Day{index}x", [date(1980 + i, day.month, day.day) for i in range(size)])
            with freeze_time(day):
                count, created = self.count_queries(self.env["behavioral.trigger"]._cron_detect)
                counts.append(count)
            self.assertEqual(len(created), size)
        self.assertEqual(counts[1], counts[2], f"detection queries for 2 and 20 birthdays: {counts}")


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class TestBirthdayOnPortal(HttpCase, BehavioralCommon):
    """The customer gives their birthday on the portal's My details."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.portal_user = mail_new_test_user(
            cls.env, login="portal_ida", password="portal_ida", name="Ida Portal",
            email="ida@example.com", groups="base.group_portal")
        cls.birthday = cls.env.ref("behavioral_email.sequence_birthday")

    def _post_details(self, birthday):
        return self.url_open("/my/account", allow_redirects=False, data={
            "csrf_token": Request.csrf_token(self),
            "name": "Ida Portal", "email": "ida@example.com", "phone": "+32 470 00 00 00",
            "street": "Rue Haute 1", "city": "Brussels", "country_id": self.env.ref("base.be").id,
            "behavioral_birthday": birthday,
        })

    def test_birthday_on_my_details(self):
        self.authenticate("portal_ida", "portal_ida")
        page = self.url_open("/my/account")
        self.assertEqual(page.status_code, 200)
        self.assertIn('name="behavioral_birthday"', page.text)

        response = self._post_details("1991-03-02")
        self.assertIn(response.status_code, (302, 303))
        partner = self.portal_user.partner_id
        self.assertEqual(partner.behavioral_birthday, date(1991, 3, 2))
        self.assertEqual(partner.city, "Brussels")

        self.start(self.birthday)
        with self.mock_queue():
            self.run_crons(NOW)
        self.assertQueued(partner, sequence=self.birthday)

    def test_bad_birthdays_refused(self):
        self.authenticate("portal_ida", "portal_ida")
        partner = self.portal_user.partner_id
        for bad in ("not-a-date", "2999-01-01", "1800-01-01", "31/12/1990"):
            response = self._post_details(bad)
            self.assertEqual(response.status_code, 200, bad)
            self.assertIn("Please enter your birthday as a date in the past.", response.text)
            self.assertFalse(partner.behavioral_birthday)
            self.assertFalse(partner.city, "nothing written")
        # cleared: optional
        self.assertIn(self._post_details("").status_code, (302, 303))
        self.assertFalse(partner.behavioral_birthday)
