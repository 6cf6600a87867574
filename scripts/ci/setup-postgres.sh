#!/usr/bin/env bash
# PostgreSQL for the tests: Debian's server package. The tests start their own server
# (initdb + pg_ctl as the postgres user, a free port on 127.0.0.1) and stop it by PID,
# so nothing is started here. Idempotent.
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1; then
  echo "postgresql: installed"
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql
# Debian's package starts a cluster of its own where it can; the tests do not use it.
