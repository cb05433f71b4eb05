"""Shared fixtures for the behavioral_email tests.

``BehavioralCase`` holds the assertion helpers; ``BehavioralCommon`` builds
the shop once per class (a website, products, customers, a marketing user)
and the shipped sequences, and drives the crons at fixed clocks.
"""
from contextlib import contextmanager
from datetime import datetime, timedelta

from freezegun import freeze_time

from odoo.addons.mail.tests.common import MailCase, mail_new_test_user
from odoo.tests.common import TransactionCase, tagged

NOW = datetime(2026, 3, 2, 9, 0, 0)


class BehavioralCase(MailCase):
    """Assertion helpers, independent of the data set."""

    test_module = "behavioral_email"

    def assertRecordValues(self, records, expected_values):
        # dump the state on failure: easier to read than a bare diff
        try:
            return super().assertRecordValues(records, expected_values)
        except AssertionError:
            fnames = list(expected_values[0].keys()) if expected_values else []
            dump = "\n".join(str({f: r[f] for f in fnames}) for r in records)
            raise AssertionError(f"Records do not match.\nGot:\n{dump}\nExpected:\n{expected_values}") from None

    def assertQueued(self, partner, count=1, sequence=None):
        """Exactly ``count`` behavioral mails were created for ``partner``
        (by ``sequence`` if given) during the mock; returns them."""
        mails = self._new_mails.filtered(
            lambda m: partner in m.recipient_ids and m.model == "behavioral.enrollment"
            and (not sequence or self.env["behavioral.enrollment"].browse(m.res_id).sequence_id == sequence))
        self.assertEqual(
            len(mails), count,
            f"Expected {count} mail(s) for {partner.name}, got {len(mails)}: {mails.mapped('subject')}")
        return mails

    def count_queries(self, func, *args):
        """(queries run by ``func(*args)`` and what it flushes, its result),
        the caches cold."""
        self.env.flush_all()
        self.env.invalidate_all()
        before = self.env.cr.sql_log_count
        result = func(*args)
        self.env.flush_all()
        return self.env.cr.sql_log_count - before, result

    def tracked_url(self, href):
        """The address a tracked link of an email (``.../r/<code>``) leads to."""
        code = (href or "").rsplit("/r/", 1)[-1]
        return self.env["link.tracker.code"].search([("code", "=", code)]).link_id.url


@tagged("standard", "post_install", "-at_install", "behavioral_email")
class BehavioralCommon(TransactionCase, BehavioralCase):
    """The shop, built once per test class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._init_mail_gateway()
        env = cls.env
        cls.company = env.company
        cls.company.write({"email": "shop@example.com", "name": "Garden Shop"})
        cls.website = env["website"].create({
            "name": "Garden Shop",
            "domain": "http://shop.example.com",
            "cart_abandoned_delay": 2.0,
            "company_id": cls.company.id,
        })
        cls.public_partner = cls.website.user_id.partner_id
        cls.products = env["product.product"].create([
            {"name": "Terracotta Pot", "list_price": 12.5, "sale_ok": True, "is_published": True,
             "type": "consu", "taxes_id": [(5, 0, 0)]},
            {"name": "Olive Tree", "list_price": 80.0, "sale_ok": True, "is_published": True,
             "type": "consu", "taxes_id": [(5, 0, 0)]},
        ])
        cls.pot, cls.tree = cls.products
        cls.customers = env["res.partner"].with_context(behavioral_no_capture=True).create([
            {"name": "Alice Customer", "email": "alice@example.com"},
            {"name": "Bob Customer", "email": "bob@example.com"},
            {"name": "Carol Customer", "email": "carol@example.com"},
        ])
        cls.alice, cls.bob, cls.carol = cls.customers
        cls.user_marketing = mail_new_test_user(
            env, login="marketer", name="Mia Marketing", email="mia@example.com",
            groups="base.group_user,behavioral_email.group_behavioral_user")
        cls.cart_sequence = env.ref("behavioral_email.sequence_cart")
        cls.order_sequence = env.ref("behavioral_email.sequence_order")
        cls.welcome_sequence = env.ref("behavioral_email.sequence_welcome")
        # the shipped sequences may run in a demo database: start from draft
        (cls.cart_sequence | cls.order_sequence | cls.welcome_sequence).write({"state": "draft"})
        # the suite must not depend on what other data the database holds
        env["behavioral.trigger"].search([("state", "=", "new")]).write({"state": "done"})

    # ------------------------------------------------------------
    # SHOP ACTIVITY
    # ------------------------------------------------------------

    def make_cart(self, partner, lines=None, at=NOW, website=None):
        """A website cart as website_sale makes it, changed last at ``at``."""
        lines = lines or [(self.pot, 2), (self.tree, 1)]
        with freeze_time(at):
            order = self.env["sale.order"].sudo().create({
                "partner_id": partner.id,
                "website_id": (website or self.website).id,
            })
            self.env["sale.order.line"].sudo().create([
                {"order_id": order.id, "product_id": product.id, "product_uom_qty": qty}
                for product, qty in lines
            ])
        return order

    def confirm(self, order, at):
        with freeze_time(at):
            order.sudo().action_confirm()

    # ------------------------------------------------------------
    # CRONS
    # ------------------------------------------------------------

    def run_crons(self, at, advance=True):
        """Detect, enroll and advance at the given time, as the crons do."""
        with freeze_time(at):
            self.env["behavioral.trigger"]._cron_detect()
            self.env["behavioral.trigger"]._cron_enroll()
            if advance:
                self.env["behavioral.enrollment"]._cron_advance()

    @contextmanager
    def mock_queue(self):
        """Capture the mail.mail created (and anything sent) meanwhile."""
        with self.mock_mail_gateway():
            yield

    def start(self, sequence, at=NOW):
        with freeze_time(at):
            sequence.action_start()

    def enrollments(self, sequence, partner=None):
        domain = [("sequence_id", "=", sequence.id)]
        if partner:
            domain.append(("partner_id", "=", partner.id))
        return self.env["behavioral.enrollment"].search(domain)

    @staticmethod
    def later(**delta):
        return NOW + timedelta(**delta)
