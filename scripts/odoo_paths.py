"""Print the addons folder of the importable Odoo 18.0, or fail clearly."""
import os
import sys

try:
    import odoo.release
except ImportError:
    sys.exit(
        "Odoo 18.0 is not importable by this Python (%s).\n"
        "Put the Odoo 18.0 source tree somewhere, install its Python requirements and make "
        "'import odoo' work, e.g.: scripts/setup_odoo.sh /path/to/folder-holding-odoo" % sys.executable
    )
if odoo.release.version_info[:2] != (18, 0):
    sys.exit("Odoo %s is importable, behavioral_email needs 18.0" % odoo.release.version)
print(os.path.join(os.path.dirname(odoo.__file__), "addons"))
