#!/usr/bin/env bash
# Training speed.
#   bench/speed.sh --page [--only models,peers,ceiling,work]
#       writes docs/SPEED.md: every model's compile time, updates/s on one and
#       two threads, epoch time and peak memory on its usual data; the peers
#       on the same rows in the same run; the hand-written loop; the wall time
#       of everyday commands against their targets (recc-zoo --page speed).
#   bench/speed.sh [DATA_DIR]
#       a quick look: biased MF with 32 factors against the hand-written SIMD
#       loop and the peers on one thread, then Hogwild on two.
# DATA_DIR defaults to ../shared/data (RECC_DATA for --page). Peers run when
# $PYTHON (default python3) has them; see bench/README-peers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ "${1:-}" = "--page" ]; then
  shift
  cargo build --release --locked --bin recc --bin recc-zoo
  exec "${CARGO_TARGET_DIR:-target}/release/recc-zoo" --page speed \
    --data "${RECC_DATA:-../shared/data}" --python "$PYTHON" "$@"
fi
DATA=${1:-../shared/data}
cargo build --release --locked --bin recc
R=target/release/recc

echo "== MovieLens-100k u1.base (80k ratings), 20 epochs, one thread"
for run in 1 2 3; do
  $R bench models/biased_mf.rec --data "ml-100k:$DATA/ml-100k" --split given:u1 \
    --epochs 20 --handwritten | grep -E "compile|recc |hand-written"
done
"$PYTHON" bench/peers_speed.py --data "$DATA/ml-100k" --repeats 3 || echo "(peers not measured)"

echo "== ML-100k u1-u5 biased MF, 25 epochs: the whole 5-fold run"
/usr/bin/time -f "   wall %e s" $R cv models/biased_mf.rec --data "ml-100k:$DATA/ml-100k" --split given -q

echo "== zipf-20m (200k users x 50k items, 20M ratings), 3 epochs"
$R bench models/biased_mf.rec --data zipf --epochs 3 --handwritten --prefetch 0
$R bench models/biased_mf.rec --data zipf --epochs 3 --handwritten
$R bench models/biased_mf.rec --data zipf --epochs 3 --threads 2
