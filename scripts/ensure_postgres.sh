#!/usr/bin/env bash
# Make sure a local PostgreSQL answers and that the current user may create databases.
set -euo pipefail
if ! pg_isready -q; then
    echo "== starting PostgreSQL"
    for version in $(ls /etc/postgresql 2>/dev/null); do
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    done
    for _ in $(seq 1 30); do pg_isready -q && break; sleep 1; done
fi
pg_isready -q || { echo "PostgreSQL is not running and could not be started" >&2; exit 1; }
if ! psql -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
    su postgres -c "createuser -s $(whoami)" || true
fi
psql -d postgres -tAc "SELECT 1" >/dev/null || { echo "no PostgreSQL role for $(whoami)" >&2; exit 1; }
