"""pytest configuration for the behavioral_email tests.

pytest-odoo imports Odoo's test framework before it turns Odoo's test flag
on, which makes Odoo log a misleading "not running in test mode" error at the
top of every run. Import it here first, with the flag on for that import only.
"""
import odoo.tools

_test_enable = odoo.tools.config["test_enable"]
odoo.tools.config["test_enable"] = True
import odoo.tests  # noqa: E402,F401  pylint: disable=wrong-import-position,unused-import

odoo.tools.config["test_enable"] = _test_enable
