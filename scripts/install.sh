#!/usr/bin/env bash
# Install what a fresh Debian + Python 3.11 machine lacks for seedzoo (run as root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    apt-get update
    apt-get install -y dataset-fashion-mnist
fi
python -m pip install torch==2.14.1 torchvision==0.29.1
python -m pip install -e ".[dev]"
