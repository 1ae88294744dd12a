#!/usr/bin/env bash
# The runtime's figures, measured on ../shared/data with the release build:
#   bench/figures.sh            # all of them
#   RECC_DATA=/path bench/figures.sh
# LightFM is run beside recc when the Python in $PYTHON (default python3)
# can import it (`pip install lightfm`).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RECC_DATA:-../shared/data}
PYTHON=${PYTHON:-python3}
cargo build --release --locked --bin recc
R=target/release/recc
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== MovieLens-100k, given folds u1-u5: biased MF (models/biased_mf.rec, default fit)"
/usr/bin/time -f "   wall %e s" $R cv models/biased_mf.rec --data "ml-100k:$DATA/ml-100k" --split given -q

echo "== Last.fm-2k, per-user 80/20 holdout of artists (seed 42): BPR-MF (models/bpr_mf.rec)"
/usr/bin/time -f "   wall %e s" $R train models/bpr_mf.rec --data "lastfm:$DATA/lastfm-2k" \
    --split user:0.2 --seed 42 --write-split "$tmp/lastfm" -q -o "$tmp/bpr.recm"
if "$PYTHON" -c "import lightfm" 2>/dev/null; then
    "$PYTHON" bench/lightfm_ranking.py "$tmp/lastfm" --loss bpr --components 32 --epochs 30
else
    echo "   LightFM is not installed for $PYTHON (pip install lightfm): comparison skipped"
fi
