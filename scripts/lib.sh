# Sourced by the scripts: Odoo's addons path, a running PostgreSQL, and a
# fresh database with the addon installed.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
ODOO_ADDONS="$("$PYTHON" "$ROOT/scripts/odoo_paths.py")" || exit 1
ADDONS_PATH="$ODOO_ADDONS,$ROOT"
"$ROOT/scripts/ensure_postgres.sh"

# The addons of this repository: behavioral_email and its bridges to optional
# apps (behavioral_email_<app>, each auto-installed with its app). The scripts
# install every one whose dependencies are available, so that the tests cover
# the bridges too: a bridge to an addon that is not part of Odoo (OCA
# queue_job) only when that addon is installed. MODULES overrides.
repo_modules() {
    "$PYTHON" - "$ROOT" <<'PYTHON'
import ast
import importlib.util
import sys
from pathlib import Path

root = Path(sys.argv[1])
modules = ["behavioral_email"]
for manifest in sorted(root.glob("behavioral_email_*/__manifest__.py")):
    depends = ast.literal_eval(manifest.read_text()).get("depends", [])
    if all((root / dep).is_dir() or importlib.util.find_spec(f"odoo.addons.{dep}") for dep in depends):
        modules.append(manifest.parent.name)
print(",".join(modules))
PYTHON
}
MODULES="${MODULES:-$(repo_modules)}"

# install_fresh DB [odoo options...]: drop DB, create it with $MODULES
# installed, and fail unless each of them really is installed.
install_fresh() {
    local db="$1"
    shift
    dropdb --if-exists "$db"
    "$PYTHON" -m odoo -d "$db" --addons-path="$ADDONS_PATH" -i "$MODULES" \
        --stop-after-init --log-level=warn --log-handler=py.warnings:ERROR "$@" \
        2>&1 | grep -v "Running as user 'root'" || true
    local module state
    for module in ${MODULES//,/ }; do
        state="$(psql -d "$db" -tAc "SELECT state FROM ir_module_module WHERE name = '$module'" 2>/dev/null || true)"
        if [ "$state" != "installed" ]; then
            echo "$module failed to install (state: '${state:-no database}')" >&2
            exit 1
        fi
    done
}
