#!/usr/bin/env bash
# Make an Odoo 18.0 source tree importable by this machine's python3:
#   scripts/setup_odoo.sh /path/to/folder-holding-odoo [odoo-requirements.txt]
# The folder must contain odoo/ (server and core addons). Its Python
# requirements, pinned for Python 3.11, are installed from the given file.
set -euo pipefail
ODOO_ROOT="$(cd "${1:?folder holding odoo/}" && pwd)"
REQS="${2:-}"
PYTHON="${PYTHON:-python3}"
[ -f "$ODOO_ROOT/odoo/release.py" ] || { echo "$ODOO_ROOT/odoo is not an Odoo source tree" >&2; exit 1; }
if [ -n "$REQS" ]; then "$PYTHON" -m pip install -q -r "$REQS"; fi
SITE="$("$PYTHON" -c 'import site; print(site.getsitepackages()[0])')"
echo "$ODOO_ROOT" > "$SITE/odoo18.pth"
"$PYTHON" -c "import odoo.release; print('Odoo', odoo.release.version, 'importable')"
