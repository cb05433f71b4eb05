#!/usr/bin/env bash
# Build a demo database (Odoo's demo shop plus the running sequences), simulate
# shop activity and run the sequences, printing what was queued for whom.
# Usage: scripts/demo.sh [database name, default behavioral_email_demo]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DB="${1:-behavioral_email_demo}"
PYTHON="${PYTHON:-python3}"
ODOO_ADDONS="$("$PYTHON" "$ROOT/scripts/odoo_paths.py")" || exit 1
ADDONS_PATH="$ODOO_ADDONS,$ROOT"

"$ROOT/scripts/ensure_postgres.sh"
dropdb --if-exists "$DB"
echo "== building demo database '$DB' (a few minutes)"
"$PYTHON" -m odoo -d "$DB" --addons-path="$ADDONS_PATH" -i behavioral_email \
    --stop-after-init --log-level=warn --log-handler=py.warnings:ERROR 2>&1 | grep -v "Running as user 'root'" || true
"$PYTHON" "$ROOT/scripts/demo.py" "$DB" "$ADDONS_PATH"
echo "== start it with: $PYTHON -m odoo -d $DB --addons-path=$ADDONS_PATH"
