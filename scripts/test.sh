#!/usr/bin/env bash
# Run the behavioral_email tests on a fresh database:
#   create it, install the addons (no demo data), run tests/ with pytest-odoo.
# Usage: scripts/test.sh [extra pytest arguments, test files under tests/]
# Environment: TEST_DB (database name, default behavioral_email_test),
#              KEEP_DB=1 to keep the database afterwards,
#              MODULES to install other addons than all of this repository's
#              (e.g. MODULES=behavioral_email: the bridges' tests then skip).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DB="${TEST_DB:-behavioral_email_test}"

cleanup() { [ "${KEEP_DB:-0}" = 1 ] || dropdb --if-exists "$DB" >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== installing $MODULES in a fresh database '$DB'"
install_fresh "$DB" --without-demo=all --http-port=0

echo "== running tests/ against it"
cd "$ROOT"
# test files or folders given as arguments replace the whole tests/ folder
TARGETS=(tests)
for arg in "$@"; do
    case "$arg" in tests/*) TARGETS=() ;; esac
done
"$PYTHON" -m pytest "${TARGETS[@]}" --odoo-database="$DB" --odoo-addons-path="$ADDONS_PATH" \
    --odoo-log-level=warn --odoo-http "$@"
