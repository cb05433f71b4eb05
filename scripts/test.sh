#!/usr/bin/env bash
# Run the behavioral_email tests on a fresh database:
#   create it, install the addon (no demo data), run tests/ with pytest-odoo.
# Usage: scripts/test.sh [extra pytest arguments]
# Environment: TEST_DB (database name, default behavioral_email_test),
#              KEEP_DB=1 to keep the database afterwards.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DB="${TEST_DB:-behavioral_email_test}"
PYTHON="${PYTHON:-python3}"

ODOO_ADDONS="$("$PYTHON" "$ROOT/scripts/odoo_paths.py")" || exit 1
ADDONS_PATH="$ODOO_ADDONS,$ROOT"

"$ROOT/scripts/ensure_postgres.sh"

dropdb --if-exists "$DB"
cleanup() { [ "${KEEP_DB:-0}" = 1 ] || dropdb --if-exists "$DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== installing behavioral_email in a fresh database '$DB'"
"$PYTHON" -m odoo -d "$DB" --addons-path="$ADDONS_PATH" -i behavioral_email \
    --without-demo=all --stop-after-init --log-level=warn --log-handler=py.warnings:ERROR --http-port=0 \
    2>&1 | grep -v "Running as user 'root'" || true
# the install must have succeeded: the module is installed
STATE="$(psql -d "$DB" -tAc "SELECT state FROM ir_module_module WHERE name = 'behavioral_email'" 2>/dev/null || true)"
if [ "$STATE" != "installed" ]; then
    echo "behavioral_email failed to install (state: '${STATE:-no database}')" >&2
    exit 1
fi

echo "== running tests/ against it"
cd "$ROOT"
"$PYTHON" -m pytest tests --odoo-database="$DB" --odoo-addons-path="$ADDONS_PATH" \
    --odoo-log-level=warn --odoo-http "$@"
