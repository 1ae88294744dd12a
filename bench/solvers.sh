#!/usr/bin/env bash
# recc's ALS and Gibbs solvers beside their peers (myFM, implicit), on the
# same rows and the same machine:
#   bench/solvers.sh                       # build, recc, peers, one table
#   bench/solvers.sh --peers-only          # the peers alone, on recc's splits
#   bench/solvers.sh --wals                # Last.fm weighted ALS beside implicit only
#   RECC_DATA=/path PYTHON=/venv/bin/python bench/solvers.sh
# $PYTHON (default python3) needs bench/requirements-solvers.txt; see
# bench/README-peers.md. Set KEEP=DIR to keep the splits and JSON files.
#
# MovieLens-100k, given folds u1-u5: Bayesian FM by Gibbs sampling, rank 10,
# 200 sweeps of which the first 5 are burn-in (myFM's default for n_iter=200),
# features (a) user, item, age group, gender, occupation, genres and (c) user
# and item only (Bayesian biased MF). (b), the rated-item and rater sets, is
# measured for myFM only: recc's MovieLens reader has no such columns.
# Last.fm-2k, per-user 20% holdout (seed 42): weighted ALS, 64 factors, 15
# sweeps, reg 0.01, confidence 1 + 40 * log(1 + plays), 2 threads; precision@10 and
# AUC over the catalogue with training items left out.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RECC_DATA:-../shared/data}
PYTHON=${PYTHON:-python3}
RANK=10 SAMPLES=195 BURN_IN=5 ALS_SWEEPS=15 THREADS=2 SEED=42
PEERS_ONLY=0 WALS_ONLY=0
case "${1:-}" in
  --peers-only) PEERS_ONLY=1 ;;
  --wals) WALS_ONLY=1 ;;
  "") ;;
  *) echo "usage: bench/solvers.sh [--peers-only | --wals]" >&2; exit 2 ;;
esac

if ! "$PYTHON" -c "import myfm, implicit" 2>/dev/null; then
  echo "error: $PYTHON cannot import myfm and implicit:" \
       "pip install -r bench/requirements-solvers.txt (see bench/README-peers.md)" >&2
  exit 2
fi
cargo build --release --locked --bin recc
R=target/release/recc
if [[ -n "${KEEP:-}" ]]; then
  tmp=$KEEP; mkdir -p "$tmp"
else
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fi

# Runs one recc command, its JSON to $1; stops the whole run if it fails.
recc_json() {
  local out=$1; shift
  echo "   recc $*" >&2
  local status=0
  "$R" "$@" --json > "$out" || status=$?
  if [[ $status != 0 ]]; then
    echo "error: this recc command failed (exit $status), so there is nothing to set beside the peers:" >&2
    echo "   $R $*" >&2
    # Under --json recc writes its error to standard output, as one object.
    sed 's/^/   /' "$out" >&2
    exit 1
  fi
}

# The shipped models at rank 10, as myFM's: the factor width is the only change.
rank_variant() {
  sed "s/vec(64)/vec($RANK)/g" "$1" > "$2"
  if ! grep -q "vec($RANK)" "$2"; then
    echo "error: $1 has no vec(64) table to set to rank $RANK" >&2
    exit 1
  fi
}

ML="ml-100k:$DATA/ml-100k"
LASTFM="lastfm:$DATA/lastfm-2k"
SIDE=user,item,age_group,gender,occupation,genres
GIBBS=(--solver gibbs --samples "$SAMPLES" --burn-in "$BURN_IN" --threads 1 --seed "$SEED")
WALS=(--solver als --sweeps "$ALS_SWEEPS" --threads "$THREADS" --seed "$SEED")

if [[ $PEERS_ONLY == 1 ]]; then
  # Only the splits: the rows depend on the data, the split and the seed, not on the model.
  echo "== recc: the splits only"
  recc_json "$tmp/split-ml.json" cv models/biased_mf.rec --data "$ML" --split given \
    --epochs 1 --write-split "$tmp/ml"
  recc_json "$tmp/split-lastfm.json" train models/bpr_mf.rec --data "$LASTFM" --split user:0.2 \
    --seed "$SEED" --epochs 1 --write-split "$tmp/lastfm" -o "$tmp/split.recm"
elif [[ $WALS_ONLY == 1 ]]; then
  echo "== recc: Last.fm-2k, weighted ALS, $ALS_SWEEPS sweeps, $THREADS threads"
  recc_json "$tmp/recc-wals.json" train models/wals.rec --data "$LASTFM" --split user:0.2 \
    "${WALS[@]}" --write-split "$tmp/lastfm" -o "$tmp/wals.recm"
  echo "== implicit on the same rows"
  "$PYTHON" bench/peers_solvers.py --only implicit --lastfm-split "$tmp/lastfm" \
    --lastfm "$DATA/lastfm-2k" --confidence log --iterations "$ALS_SWEEPS" --threads "$THREADS" \
    --seed "$SEED" --json "$tmp/peers.json"
  echo "== side by side"
  "$PYTHON" bench/solvers_table.py --peers "$tmp/peers.json" --wals "$tmp/recc-wals.json" \
    --sweeps $((SAMPLES + BURN_IN))
  exit 0
else
  rank_variant models/fm.rec "$tmp/fm.rec"
  rank_variant models/biased_mf.rec "$tmp/biased_mf.rec"
  if [[ ! -f models/wals.rec ]]; then
    echo "error: models/wals.rec is missing: recc has no weighted ALS model to measure" >&2
    exit 1
  fi
  echo "== recc: MovieLens-100k u1-u5, Gibbs, rank $RANK, $BURN_IN + $SAMPLES sweeps"
  recc_json "$tmp/recc-fm-side.json" cv "$tmp/fm.rec" --data "$ML" --split given \
    --features "$SIDE" "${GIBBS[@]}" --write-split "$tmp/ml"
  recc_json "$tmp/recc-bmf.json" cv "$tmp/biased_mf.rec" --data "$ML" --split given "${GIBBS[@]}"
  echo "== recc: Last.fm-2k, weighted ALS, $ALS_SWEEPS sweeps, $THREADS threads"
  recc_json "$tmp/recc-wals.json" train models/wals.rec --data "$LASTFM" --split user:0.2 \
    "${WALS[@]}" --write-split "$tmp/lastfm" -o "$tmp/wals.recm"
fi

echo "== peers on the same rows"
"$PYTHON" bench/peers_solvers.py --ml-split "$tmp/ml" --lastfm-split "$tmp/lastfm" \
  --lastfm "$DATA/lastfm-2k" --rank "$RANK" --sweeps $((SAMPLES + BURN_IN)) --burn-in "$BURN_IN" \
  --iterations "$ALS_SWEEPS" --confidence log --threads "$THREADS" --seed "$SEED" --json "$tmp/peers.json"

if [[ $PEERS_ONLY == 0 ]]; then
  echo "== side by side"
  "$PYTHON" bench/solvers_table.py --peers "$tmp/peers.json" --fm-side "$tmp/recc-fm-side.json" \
    --bmf "$tmp/recc-bmf.json" --wals "$tmp/recc-wals.json" --sweeps $((SAMPLES + BURN_IN))
fi
