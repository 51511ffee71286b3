#!/usr/bin/env bash
# Install what a fresh Debian + Python 3.11 machine lacks for seedzoo (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
missing=()
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null || missing+=(chromium)  # headless: the report's HTML test
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update
    apt-get install -y "${missing[@]}"
fi
python -m pip install torch==2.14.1 torchvision==0.29.1
python -m pip install -e ".[dev]"
