#!/usr/bin/env bash
# Build a demo database (Odoo's demo shop plus the running sequences), simulate
# shop activity and run the sequences, printing what was queued for whom.
# Usage: scripts/demo.sh [database name, default behavioral_email_demo]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DB="${1:-behavioral_email_demo}"

echo "== building demo database '$DB' (a few minutes)"
install_fresh "$DB"
"$PYTHON" "$ROOT/scripts/demo.py" "$DB" "$ADDONS_PATH"
LOAD=""
# with the queue_job bridge, the crons queue jobs: load its job runner too
if [[ ",$MODULES," == *",behavioral_email_queue_job,"* ]]; then LOAD=" --load=web,queue_job"; fi
echo "== start it with: $PYTHON -m odoo -d $DB --addons-path=$ADDONS_PATH$LOAD"
