#!/usr/bin/env bash
# PostgreSQL for the tests that use a real server (tests start and stop their own
# throwaway clusters on 127.0.0.1 by process id; nothing is left running here).
# Idempotent: installs Debian's postgresql only when its binaries are missing, and
# the psycopg driver (also in the `test` extra).
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq postgresql >/dev/null
  # Debian's package starts a cluster of its own; the tests do not use it.
  $SUDO service postgresql stop >/dev/null 2>&1 || true
fi
python -m pip install -q "psycopg[binary]>=3.1"
