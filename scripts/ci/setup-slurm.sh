#!/usr/bin/env bash
# SLURM for the tests: Debian's slurm-wlm (slurmctld, slurmd, sbatch) and munge. The
# tests start a one-node cluster of their own (tests/services.py: munged, slurmctld and
# slurmd from a temporary directory, free ports on 127.0.0.1) and stop it by PID, so
# nothing is started here. slurmd must run as root. Idempotent.
set -euo pipefail
if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
  && command -v munged >/dev/null; then
  echo "slurm: installed"
  exit 0
fi
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge
