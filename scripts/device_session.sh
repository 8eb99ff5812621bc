#!/usr/bin/env bash
# The device session (scripts/device_session.py says what it does): on a machine with one NVIDIA GPU whose
# python3 has torch, numpy, scipy, pandas, pyyaml and tqdm; installs nothing, runs the checkout in place.
#
#   bash scripts/device_session.sh --minutes 9 --out DIR [--device cuda] [--profile paper|smoke] [--tf32] [--export DIR2]
#
# Data: .device-data/ in the checkout (MNIST/raw and cifar10-jpeg/ copied from the offline mirrors), else $MILR_DATA.
# PYTHON picks the interpreter (default python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if [ -z "${MILR_DATA:-}" ] && [ -d "$root/.device-data" ]; then
  export MILR_DATA="$root/.device-data" MILR_OFFLINE="${MILR_OFFLINE:-1}"
fi
exec "${PYTHON:-python3}" "$root/scripts/device_session.py" "$@"
