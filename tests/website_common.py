"""Website visits recorded the way Odoo records them, for the tests of the
visit-based trigger kinds (``product_viewed``, ``page_viewed``)."""
import uuid

import lxml.html
from freezegun import freeze_time

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.tests.common import HttpCase

from .common import BehavioralCase, BehavioralCommon


class WebsiteVisitsCommon(BehavioralCommon):
    """The shop of ``BehavioralCommon`` plus visitors.

    A logged-in customer's visitor is keyed by the customer's partner id (as
    ``website.visitor._get_access_token`` does for a user who is not the public
    user); an anonymous visitor by a 32-character hash. Views and visits go
    through ``website.visitor._add_viewed_product`` and ``_add_tracking``,
    website_sale's and website's own paths.
    """

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.portal_user = mail_new_test_user(
            cls.env, login="dana_portal", name="Dana Portal", email="dana@example.com",
            groups="base.group_portal")
        cls.dana = cls.portal_user.partner_id

    def visitor(self, partner=None):
        """The website visitor of ``partner``, or a new anonymous one."""
        Visitor = self.env["website.visitor"].sudo()
        if partner:
            existing = Visitor.search([("partner_id", "=", partner.id)], limit=1)
            if existing:
                return existing
        return Visitor.create({
            "access_token": str(partner.id) if partner else uuid.uuid4().hex,
            "website_id": self.website.id,
        })

    def view_product(self, visitor, product, at):
        """The product page reports a view, as /shop/products/recently_viewed_update does."""
        with freeze_time(at):
            visitor._add_viewed_product(product.id)

    def visit_page(self, visitor, path, at):
        """A tracked page is visited."""
        url = f"{self.website.domain}{path}"
        with freeze_time(at):
            visitor._add_tracking([("url", "=", url)], {"url": url})


class ShopBrowsingCase(HttpCase, BehavioralCase):
    """For the tests where a customer browses the real shop over HTTP."""

    def _login_in_this_session(self, user):
        """Log in through the login form, keeping the browser's session, so
        that website merges the anonymous visitor as it does for real."""
        form = self.url_open("/web/login")
        csrf = lxml.html.fromstring(form.text).xpath("//input[@name='csrf_token']/@value")[0]
        response = self.url_open("/web/login", data={
            "login": user.login, "password": user.login, "csrf_token": csrf})
        self.assertEqual(response.status_code, 200)

    def _run_crons(self, at):
        with freeze_time(at):
            self.env["behavioral.trigger"]._cron_detect()
            self.env["behavioral.trigger"]._cron_enroll()
            self.env["behavioral.enrollment"]._cron_advance()
