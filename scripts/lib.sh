# Sourced by the scripts: Odoo's addons path, a running PostgreSQL, and a
# fresh database with the addon installed.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
ODOO_ADDONS="$("$PYTHON" "$ROOT/scripts/odoo_paths.py")" || exit 1
ADDONS_PATH="$ODOO_ADDONS,$ROOT"
"$ROOT/scripts/ensure_postgres.sh"

# install_fresh DB [odoo options...]: drop DB, create it with behavioral_email
# installed, and fail unless the module really is installed.
install_fresh() {
    local db="$1"
    shift
    dropdb --if-exists "$db"
    "$PYTHON" -m odoo -d "$db" --addons-path="$ADDONS_PATH" -i behavioral_email \
        --stop-after-init --log-level=warn --log-handler=py.warnings:ERROR "$@" \
        2>&1 | grep -v "Running as user 'root'" || true
    local state
    state="$(psql -d "$db" -tAc "SELECT state FROM ir_module_module WHERE name = 'behavioral_email'" 2>/dev/null || true)"
    if [ "$state" != "installed" ]; then
        echo "behavioral_email failed to install (state: '${state:-no database}')" >&2
        exit 1
    fi
}
