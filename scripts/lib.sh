# Sourced by the scripts: Odoo's addons path, a running PostgreSQL, and a
# fresh database with the addon installed.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
ODOO_ADDONS="$("$PYTHON" "$ROOT/scripts/odoo_paths.py")" || exit 1
ADDONS_PATH="$ODOO_ADDONS,$ROOT"
"$ROOT/scripts/ensure_postgres.sh"

# The addons of this repository: behavioral_email and its bridges to optional
# apps (behavioral_email_<app>, each auto-installed with its app). The scripts
# install them all, so that the tests cover the bridges too; MODULES overrides.
repo_modules() {
    local modules="behavioral_email" manifest
    for manifest in "$ROOT"/behavioral_email_*/__manifest__.py; do
        [ -f "$manifest" ] && modules="$modules,$(basename "$(dirname "$manifest")")"
    done
    echo "$modules"
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
