"""Print the addons folders of the importable Odoo 18.0, or fail clearly.

The first is Odoo's own; the others are where addons installed as Python
packages live (``pip install odoo-addon-queue_job`` puts OCA addons in
``site-packages/odoo/addons``), comma-separated as ``--addons-path`` wants.
"""
import os
import sys

try:
    import odoo.addons
    import odoo.release
except ImportError:
    sys.exit(
        "Odoo 18.0 is not importable by this Python (%s).\n"
        "Put the Odoo 18.0 source tree somewhere, install its Python requirements and make "
        "'import odoo' work, e.g.: scripts/setup_odoo.sh /path/to/folder-holding-odoo" % sys.executable
    )
if odoo.release.version_info[:2] != (18, 0):
    sys.exit("Odoo %s is importable, behavioral_email needs 18.0" % odoo.release.version)
core = os.path.join(os.path.dirname(odoo.__file__), "addons")
paths = [core] + [
    path for path in odoo.addons.__path__
    if os.path.normcase(os.path.abspath(path)) != os.path.normcase(os.path.abspath(core))
    and os.path.isdir(path)
]
print(",".join(paths))
