#!/usr/bin/env bash
# Regenerates docs/RESULTS.md from scratch: trains every model family on the
# shared datasets with its file's own defaults and checks each figure.
#   bench/results.sh                              # all sections
#   bench/results.sh --only explicit,lastfm       # some of them
#   RECC_DATA=/path PYTHON=/venv/bin/python bench/results.sh
# LightFM columns need a Python that can `import lightfm` (pip install lightfm).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin recc --bin recc-zoo
exec "${CARGO_TARGET_DIR:-target}/release/recc-zoo" --data "${RECC_DATA:-../shared/data}" --out docs/RESULTS.md "$@"
