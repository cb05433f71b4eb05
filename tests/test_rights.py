"""What a Behavioral Email User (and nothing else) can do in the back office.

The user is created with the addon's User group only, and every screen its
menus and buttons offer is loaded the way the web client loads it: the menus
(load_menus), the action, the views (get_views) and the records through
web_search_read / web_read with the fields those views show.
"""
from datetime import timedelta

from freezegun import freeze_time
from lxml import etree

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import AccessError

from .common import NOW, BehavioralCommon


class TestUserRights(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = cls.env
        cls.user = mail_new_test_user(
            env, login="ulla", name="Ulla User", email="ulla@example.com",
            groups="behavioral_email.group_behavioral_user")
        # carts and orders belong to a salesperson who is not the marketer:
        # the marketer must still see them all
        cls.salesperson = mail_new_test_user(
            env, login="sam", name="Sam Sales", email="sam@example.com",
            groups="sales_team.group_sale_salesman")
        cls.start(cls, cls.cart_sequence)
        cls.start(cls, cls.welcome_sequence)
        # a sequence whose email cannot render (broken behind the editor's
        # back, which refuses it): its enrollments fail
        cls.fragile = env["behavioral.sequence"].create({
            "name": "Fragile welcome", "trigger_type": "partner_created",
            "step_ids": [(0, 0, {"subject": "Hi", "delay_value": 0, "body_html": "<p>Hi</p>"})],
        })
        cls.fragile.step_ids.mailing_id.body_html = "<p><t t-out='object.no_such_field'/></p>"
        cls.start(cls, cls.fragile)
        cls.cart = cls.make_cart(cls, cls.alice)
        cls.bob_cart = cls.make_cart(cls, cls.bob)
        (cls.cart | cls.bob_cart).user_id = cls.salesperson
        with freeze_time(NOW):
            cls.dora = env["res.partner"].create({"name": "Dora New", "email": "dora@example.com"})
        cls.run_crons(cls, NOW + timedelta(hours=3))
        # Alice orders her cart after the first reminder: a conversion
        cls.confirm(cls, cls.cart, NOW + timedelta(hours=5))
        cls.run_crons(cls, NOW + timedelta(hours=5, minutes=1))
        env["mail.blacklist"]._add("carol@example.com")  # a consent change to read
        cls.cart_enrollment = cls.enrollments(cls, cls.cart_sequence, cls.alice)
        cls.welcome_enrollment = cls.enrollments(cls, cls.welcome_sequence, cls.dora)
        cls.failed_enrollment = cls.enrollments(cls, cls.fragile, cls.dora)
        assert cls.failed_enrollment.state == "failed"
        assert cls.cart_enrollment.converted_order_id == cls.cart
        assert cls.welcome_enrollment.trace_ids

    def setUp(self):
        super().setUp()
        self.uenv = self.env(user=self.user)

    # ------------------------------------------------------------
    # THE WEB CLIENT'S PATH
    # ------------------------------------------------------------

    def _view_fields(self, model, view_type):
        """The fields a view shows, as the web client gets them."""
        views = self.uenv[model].get_views([(False, view_type)])
        arch = etree.fromstring(views["views"][view_type]["arch"])
        return views["models"], arch

    def _spec(self, models, model, depth=0):
        """The web_read specification the web client builds from a view."""
        spec = {}
        for fname, field in models[model]["fields"].items():
            if field["type"] == "many2one":
                spec[fname] = {"fields": {"display_name": {}}}
            elif field["type"] in ("one2many", "many2many"):
                comodel = field["relation"]
                if depth == 0 and comodel in models and comodel != model:
                    spec[fname] = {"fields": self._spec(models, comodel, depth=1)}
                else:
                    spec[fname] = {"fields": {"display_name": {}}}
            else:
                spec[fname] = {}
        return spec

    def open_list(self, model, domain):
        """Load a list (and its search view) and its records; return the records read."""
        models, _arch = self._view_fields(model, "list")
        self._view_fields(model, "search")
        result = self.uenv[model].web_search_read(domain, self._spec(models, model), limit=80)
        return result["records"]

    def open_form(self, model, res_id):
        """Load a form and its record; return the values read."""
        models, arch = self._view_fields(model, "form")
        [values] = self.uenv[model].browse(res_id).web_read(self._spec(models, model))
        return values, arch

    def press(self, model, res_id, method):
        """A type="object" button, as /web/dataset/call_button calls it."""
        return getattr(self.uenv[model].browse(res_id), method)()

    def run_window_action(self, action):
        """Open what an act_window shows: its list, then each record's form."""
        self.assertEqual(action["type"], "ir.actions.act_window")
        model = action["res_model"]
        if action.get("res_id"):
            values, _arch = self.open_form(model, action["res_id"])
            return [values]
        rows = self.open_list(model, action.get("domain") or [])
        for row in rows:
            self.open_form(model, row["id"])
        return rows

    # ------------------------------------------------------------
    # TESTS
    # ------------------------------------------------------------

    def test_menus_open_every_screen(self):
        menus = self.uenv["ir.ui.menu"].load_menus(debug=False)
        root = self.env.ref("behavioral_email.behavioral_email_menu")
        self.assertIn(root.id, menus["root"]["children"])
        app_menus = [menus[child] for child in menus[root.id]["children"]]
        self.assertEqual(
            sorted(menu["xmlid"] for menu in app_menus),
            ["behavioral_email.behavioral_consent_menu", "behavioral_email.behavioral_enrollment_menu",
             "behavioral_email.behavioral_reporting_menu",
             "behavioral_email.behavioral_sequence_menu", "behavioral_email.behavioral_trace_menu"],
            "a User sees the working menus, not Configuration")
        # the menus opening a screen, and those grouped under a parent (Reporting)
        leaves = [menu for menu in app_menus if menu["action"]] + [
            menus[child] for menu in app_menus if not menu["action"] for child in menu["children"]]
        self.assertEqual(len(leaves), 8)
        opened = {}
        for menu in leaves:
            action_model, action_id = menu["action"].split(",")
            action = self.env[action_model].sudo().browse(int(action_id))._get_action_dict()
            opened[action["res_model"]] = self.run_window_action(action)
        self.assertIn(self.cart_sequence.id, [row["id"] for row in opened["behavioral.sequence"]])
        self.assertIn(self.cart_enrollment.id, [row["id"] for row in opened["behavioral.enrollment"]])
        self.assertIn(self.cart_enrollment.trace_ids.id, [row["id"] for row in opened["behavioral.trace"]])
        carol_rows = self.env["behavioral.consent"].search([("partner_id", "=", self.carol.id)])
        self.assertTrue(carol_rows)
        self.assertLessEqual(set(carol_rows.ids), {row["id"] for row in opened["behavioral.consent"]},
                             "the consent history")
        # kanban too, and the counters shown on it
        self._view_fields("behavioral.sequence", "kanban")
        [cart_row] = [row for row in opened["behavioral.sequence"] if row["id"] == self.cart_sequence.id]
        self.assertEqual(cart_row["enrollment_count"], 2)
        self.assertEqual(cart_row["converted_count"], 1)

    def test_trigger_screens(self):
        """Triggers are linked from every enrollment form: a User reads them."""
        trigger = self.cart_enrollment.trigger_id
        values, _arch = self.open_form("behavioral.trigger", trigger.id)
        self.assertEqual(values["partner_id"]["id"], self.alice.id)
        self.assertIn(self.cart_enrollment.id, [e["id"] for e in values["enrollment_ids"]])
        rows = self.open_list("behavioral.trigger", [("partner_id", "=", self.alice.id)])
        self.assertIn(trigger.id, [row["id"] for row in rows])

    def test_sequence_form_and_smart_buttons(self):
        values, arch = self.open_form("behavioral.sequence", self.cart_sequence.id)
        self.assertEqual(values["converted_count"], 1)
        self.assertEqual(values["revenue"], self.cart.amount_untaxed)
        buttons = {node.get("name") for node in arch.iter("button") if node.get("type") == "object"}
        self.assertLessEqual(
            {"action_view_enrollments", "action_view_traces", "action_view_conversions"}, buttons)

        rows = self.run_window_action(
            self.press("behavioral.sequence", self.cart_sequence.id, "action_view_enrollments"))
        self.assertEqual({row["id"] for row in rows}, set(self.enrollments(self.cart_sequence).ids))

        rows = self.run_window_action(self.press("behavioral.sequence", self.cart_sequence.id, "action_view_traces"))
        self.assertEqual({row["id"] for row in rows}, set(self.enrollments(self.cart_sequence).trace_ids.ids))

        # the converted order belongs to another salesperson
        action = self.press("behavioral.sequence", self.cart_sequence.id, "action_view_conversions")
        self.assertEqual(action["res_model"], "sale.order")
        rows = self.run_window_action(action)
        self.assertEqual([row["id"] for row in rows], [self.cart.id])
        order, _arch = self.open_form("sale.order", self.cart.id)
        self.assertEqual(order["partner_id"]["display_name"], self.alice.display_name)
        self.assertEqual(order["user_id"]["id"], self.salesperson.id)
        self.assertTrue(order["order_line"])

    def test_failed_enrollments(self):
        """The Failed smart button, Retry Failed on the sequence, Retry on the enrollment."""
        values, arch = self.open_form("behavioral.sequence", self.fragile.id)
        self.assertEqual(values["failed_count"], 1)
        buttons = {node.get("name") for node in arch.iter("button") if node.get("type") == "object"}
        self.assertLessEqual({"action_view_failed", "action_retry_failed"}, buttons)
        rows = self.run_window_action(self.press("behavioral.sequence", self.fragile.id, "action_view_failed"))
        self.assertEqual([row["id"] for row in rows], self.failed_enrollment.ids)
        values, _arch = self.open_form("behavioral.enrollment", self.failed_enrollment.id)
        self.assertTrue(values["state_msg"])

        with freeze_time(NOW + timedelta(hours=6)):
            self.press("behavioral.sequence", self.fragile.id, "action_retry_failed")
        self.assertEqual(self.failed_enrollment.state, "running")
        # the template is still broken: it fails again; the enrollment's own Retry button
        with self.mock_queue():
            self.run_crons(NOW + timedelta(hours=6))
        self.assertEqual(self.failed_enrollment.state, "failed")
        self.press("behavioral.enrollment", self.failed_enrollment.id, "action_retry")
        self.assertEqual(self.failed_enrollment.state, "running")
        self.press("behavioral.enrollment", self.failed_enrollment.id, "action_stop")
        self.assertRecordValues(self.failed_enrollment, [{"state": "exited", "exit_reason": "manual"}])

    def test_enrollment_form_and_source(self):
        values, _arch = self.open_form("behavioral.enrollment", self.cart_enrollment.id)
        self.assertEqual(values["order_id"]["display_name"], self.cart.display_name)
        self.assertEqual(values["converted_order_id"]["id"], self.cart.id)
        self.assertEqual(len(values["trace_ids"]), 1)

        action = self.press("behavioral.enrollment", self.cart_enrollment.id, "action_open_source")
        self.assertEqual((action["res_model"], action["res_id"]), ("sale.order", self.cart.id))
        [order] = self.run_window_action(action)
        self.assertEqual(order["name"], self.cart.name)

        action = self.press("behavioral.enrollment", self.welcome_enrollment.id, "action_open_source")
        self.assertEqual((action["res_model"], action["res_id"]), ("res.partner", self.dora.id))
        [partner] = self.run_window_action(action)
        self.assertEqual(partner["email"], "dora@example.com")

        rows = self.run_window_action(
            self.press("behavioral.enrollment", self.cart_enrollment.id, "action_view_traces"))
        self.assertEqual([row["id"] for row in rows], self.cart_enrollment.trace_ids.ids)

    def test_cart_and_customer_smart_buttons(self):
        """The buttons the addon adds to carts and contacts."""
        action = self.press("sale.order", self.bob_cart.id, "action_view_behavioral_enrollments")
        rows = self.run_window_action(action)
        self.assertEqual([row["id"] for row in rows], self.enrollments(self.cart_sequence, self.bob).ids)
        action = self.press("res.partner", self.dora.id, "action_view_behavioral_enrollments")
        rows = self.run_window_action(action)
        self.assertEqual({row["id"] for row in rows}, set((self.welcome_enrollment | self.failed_enrollment).ids))

    def test_filter_domain_widgets(self):
        """The domain widgets count matching carts and customers as the user,
        and list the fields to filter on; every salesperson's carts count."""
        for model in ("sale.order", "res.partner"):
            self.assertIn("name", self.uenv[model].fields_get(attributes=["string", "type"]))
        website_carts = [("website_id", "=", self.website.id)]
        self.assertEqual(
            self.uenv["sale.order"].search_count(website_carts),
            self.env["sale.order"].search_count(website_carts))
        self.assertEqual(self.uenv["sale.order"].search_count(website_carts), 2)
        self.assertEqual(self.uenv["sale.order"].search_count([("order_line.product_id", "=", self.tree.id),
                                                                ("website_id", "=", self.website.id)]), 2)
        self.assertEqual(self.uenv["res.partner"].search_count([("email", "=ilike", "%@example.com"),
                                                                 ("id", "in", self.customers.ids)]), 3)
        # the "N records" button of the widget lists them
        rows = self.open_list("sale.order", website_carts)
        self.assertEqual({row["id"] for row in rows}, set((self.cart | self.bob_cart).ids))

    def test_build_start_and_pause_a_sequence(self):
        Sequence = self.uenv["behavioral.sequence"]
        sequence = Sequence.create({
            "name": "Big carts",
            "trigger_type": "cart_abandoned",
            "filter_domain": "[('amount_total', '>', 50)]",
            "partner_domain": "[('email', '!=', False)]",
            "step_ids": [(0, 0, {"subject": "Still there?", "body_html": "<p>Your cart waits.</p>",
                                 "delay_value": 1, "delay_unit": "hours"})],
        })
        values, _arch = self.open_form("behavioral.sequence", sequence.id)
        self.assertEqual(len(values["step_ids"]), 1)
        self.press("behavioral.sequence", sequence.id, "action_start")
        self.assertEqual(sequence.state, "running")
        self.press("behavioral.sequence", sequence.id, "action_pause")
        self.assertEqual(sequence.state, "paused")
        self.press("behavioral.sequence", sequence.id, "action_draft")
        self.assertEqual(sequence.state, "draft")
        step, _arch = self.open_form("behavioral.sequence.step", sequence.step_ids.id)
        self.assertEqual(step["subject"], "Still there?")

    def test_what_a_user_may_not_do(self):
        sequence = self.uenv["behavioral.sequence"].create({"name": "Mine", "trigger_type": "order_confirmed"})
        with self.assertRaises(AccessError):
            sequence.unlink()
        with self.assertRaises(AccessError):
            sequence.consent_mode = "transactional"
        with self.assertRaises(AccessError):
            self.uenv["behavioral.sequence"].create(
                {"name": "Receipts", "trigger_type": "order_confirmed", "consent_mode": "transactional"})
        with self.assertRaises(AccessError):
            self.cart_enrollment.with_user(self.user).trigger_id.write({"state": "new"})
        with self.assertRaises(AccessError):
            self.cart_enrollment.trace_ids.with_user(self.user).unlink()
        # reading every cart does not mean editing other salespeople's orders
        with self.assertRaises(AccessError):
            self.bob_cart.with_user(self.user).write({"note": "<p>changed</p>"})
        # nor the settings, which belong to administrators
        with self.assertRaises(AccessError):
            self.uenv["res.config.settings"].create({})
        self.assertEqual(sequence.exists(), sequence)
