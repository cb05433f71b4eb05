"""Settings > Behavioral Email: the parameters the crons read and the
company's cadence limits, saved the way the settings screen saves them."""
from datetime import timedelta

from freezegun import freeze_time
from lxml import etree

from odoo.addons.mail.tests.common import mail_new_test_user
from odoo.exceptions import ValidationError

from .common import NOW, BehavioralCommon

PARAMS = {
    "behavioral_enroll_batch_size": "behavioral_email.enroll_batch_size",
    "behavioral_advance_batch_size": "behavioral_email.advance_batch_size",
    "behavioral_bounce_limit": "behavioral_email.bounce_limit",
    "behavioral_trigger_retention_days": "behavioral_email.trigger_retention_days",
    "behavioral_trace_body_retention_days": "behavioral_email.trace_body_retention_days",
}


class TestSettings(BehavioralCommon):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.admin = mail_new_test_user(
            cls.env, login="ada", name="Ada Admin", email="ada@example.com",
            groups="base.group_system,behavioral_email.group_behavioral_manager")
        cls.system_only = mail_new_test_user(
            cls.env, login="sid", name="Sid System", email="sid@example.com",
            groups="base.group_system")
        cls.ICP = cls.env["ir.config_parameter"].sudo()

    def save(self, **values):
        """Open the settings, change ``values`` and press Save."""
        settings = self.env(user=self.admin)["res.config.settings"].create(values)
        settings.execute()
        return settings

    def test_defaults_shown(self):
        settings = self.env(user=self.admin)["res.config.settings"].create({})
        self.assertRecordValues(settings, [{
            "behavioral_enroll_batch_size": 500,
            "behavioral_advance_batch_size": 200,
            "behavioral_bounce_limit": 1,
            "behavioral_trigger_retention_days": 180,
            "behavioral_trace_body_retention_days": 90,
            "behavioral_quiet_start": 0.0,
            "behavioral_quiet_end": 0.0,
            "behavioral_cap_count": 2,
            "behavioral_cap_hours": 24,
        }])
        # a parameter deleted by hand: the screen shows the value the crons fall back to
        self.ICP.search([("key", "=", "behavioral_email.advance_batch_size")]).unlink()
        self.assertEqual(self.env(user=self.admin)["res.config.settings"].create({}).behavioral_advance_batch_size, 200)

    def test_save_parameters_and_cadence(self):
        self.save(
            behavioral_enroll_batch_size=50, behavioral_advance_batch_size=20,
            behavioral_bounce_limit=3, behavioral_trigger_retention_days=30,
            behavioral_trace_body_retention_days=45, behavioral_quiet_start=21.0, behavioral_quiet_end=8.0,
            behavioral_cap_count=0, behavioral_cap_hours=48,
        )
        self.assertEqual({fname: self.ICP.get_param(key) for fname, key in PARAMS.items()}, {
            "behavioral_enroll_batch_size": "50",
            "behavioral_advance_batch_size": "20",
            "behavioral_bounce_limit": "3",
            "behavioral_trigger_retention_days": "30",
            "behavioral_trace_body_retention_days": "45",
        })
        self.assertRecordValues(self.company, [{
            "behavioral_quiet_start": 21.0, "behavioral_quiet_end": 8.0,
            "behavioral_cap_count": 0, "behavioral_cap_hours": 48,
        }])
        # and the screen shows them back
        settings = self.env(user=self.admin)["res.config.settings"].create({})
        self.assertEqual(settings.behavioral_bounce_limit, 3)
        self.assertEqual(settings.behavioral_quiet_start, 21.0)

    def test_bounce_limit_is_applied(self):
        """The saved bounce limit is the one consent reads."""
        self.alice.message_bounce = 2
        self.save(behavioral_bounce_limit=3)
        self.assertFalse(self.cart_sequence._get_consent_failures(self.alice))
        self.save(behavioral_bounce_limit=2)
        self.assertEqual(self.cart_sequence._get_consent_failures(self.alice), {self.alice.id: "mail_bounce"})

    def test_batch_sizes_refused_below_one(self):
        for fname in ("behavioral_enroll_batch_size", "behavioral_advance_batch_size", "behavioral_bounce_limit"):
            for value in (0, -5):
                with self.subTest(fname=fname, value=value), \
                        self.assertRaisesRegex(ValidationError, "must be at least 1"), self.env.cr.savepoint():
                    self.save(**{fname: value})
        self.assertEqual(self.ICP.get_param("behavioral_email.enroll_batch_size"), "500")
        self.assertEqual(self.ICP.get_param("behavioral_email.advance_batch_size"), "200")
        self.assertEqual(self.ICP.get_param("behavioral_email.bounce_limit"), "1")
        with self.assertRaisesRegex(ValidationError, "cannot be negative"), self.env.cr.savepoint():
            self.save(behavioral_trigger_retention_days=-1)
        with self.assertRaisesRegex(ValidationError, "email copies cannot be negative"), self.env.cr.savepoint():
            self.save(behavioral_trace_body_retention_days=-1)
        self.assertEqual(self.ICP.get_param("behavioral_email.trace_body_retention_days"), "90")

    def test_retention_zero_keeps_triggers_forever(self):
        self.start(self.welcome_sequence)
        with freeze_time(NOW - timedelta(days=400)):
            old = self.env["res.partner"].create({"name": "Old", "email": "old@example.com"})
            self.env["behavioral.trigger"]._cron_enroll()
        Trigger = self.env["behavioral.trigger"]
        self.save(behavioral_trigger_retention_days=0)
        # stored explicitly: a missing parameter would mean the 180-day default
        self.assertEqual(self.ICP.get_param("behavioral_email.trigger_retention_days"), "0")
        settings = self.env(user=self.admin)["res.config.settings"].create({})
        self.assertEqual(settings.behavioral_trigger_retention_days, 0)
        with freeze_time(NOW):
            Trigger._cron_gc()
        self.assertTrue(Trigger.search([("partner_id", "=", old.id)]))
        self.save(behavioral_trigger_retention_days=365)
        with freeze_time(NOW):
            Trigger._cron_gc()
        self.assertFalse(Trigger.search([("partner_id", "=", old.id)]))

    def test_email_copies_retention_zero_is_stored(self):
        """0 keeps the copies of the emails forever: stored as such, since a
        missing parameter would mean the 90-day default (the purge itself is
        tested with the reports, tests/test_reporting.py)."""
        self.save(behavioral_trace_body_retention_days=0)
        self.assertEqual(self.ICP.get_param("behavioral_email.trace_body_retention_days"), "0")
        self.assertEqual(
            self.env(user=self.admin)["res.config.settings"].create({}).behavioral_trace_body_retention_days, 0)

    def test_cadence_limits_refused(self):
        for values, message in [
            ({"behavioral_quiet_start": 24.0}, "between 00:00 and 23:59"),
            ({"behavioral_quiet_end": -1.0}, "between 00:00 and 23:59"),
            ({"behavioral_cap_count": -1}, "cannot be negative"),
            ({"behavioral_cap_hours": 0}, "at least one hour"),
        ]:
            # the request of a refused save is rolled back: a savepoint here
            with self.subTest(values=values), self.assertRaisesRegex(ValidationError, message), \
                    self.env.cr.savepoint():
                self.save(**values)
        self.assertRecordValues(self.company, [{
            "behavioral_quiet_start": 0.0, "behavioral_quiet_end": 0.0,
            "behavioral_cap_count": 2, "behavioral_cap_hours": 24,
        }])

    def test_section_and_menu_for_administrators(self):
        def section(user):
            arch = self.env(user=user)["res.config.settings"].get_views([(False, "form")])["views"]["form"]["arch"]
            return etree.fromstring(arch).xpath("//app[@name='behavioral_email']")

        [app] = section(self.admin)
        shown = {node.get("name") for node in app.iter("field")}
        self.assertLessEqual(set(PARAMS) | {
            "behavioral_quiet_start", "behavioral_quiet_end", "behavioral_cap_count", "behavioral_cap_hours",
        }, shown)
        self.assertEqual(
            {node.get("widget") for node in app.iter("field") if node.get("name").startswith("behavioral_quiet")},
            {"float_time"})
        # a system administrator who does not run Behavioral Email does not get the section
        self.assertFalse(section(self.system_only))

        settings_menu = self.env.ref("behavioral_email.behavioral_settings_menu")
        menus = self.env(user=self.admin)["ir.ui.menu"].load_menus(debug=False)
        self.assertIn(settings_menu.id, menus)
        action_model, action_id = menus[settings_menu.id]["action"].split(",")
        action = self.env[action_model].browse(int(action_id))._get_action_dict()
        self.assertEqual(action["res_model"], "res.config.settings")
        self.assertEqual(action["context"], "{'module': 'behavioral_email', 'bin_size': False}")
        marketer_menus = self.env(user=self.user_marketing)["ir.ui.menu"].load_menus(debug=False)
        self.assertNotIn(settings_menu.id, marketer_menus)
