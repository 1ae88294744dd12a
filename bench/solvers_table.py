"""One side-by-side table of recc's solvers and their peers (bench/solvers.sh).

Reads the JSON of `recc cv ... --json` (MovieLens-100k, Gibbs), of
`recc train ... --json` (Last.fm-2k, weighted ALS) and of
`bench/peers_solvers.py --json`, and prints each figure with recc/peer.
recc's time per sweep is each fold's training seconds over its sweeps,
averaged over the folds, as myFM's is its fit's seconds over its sweeps.

    python bench/solvers_table.py --peers P.json --fm-side A.json --bmf C.json
                                  --wals W.json --sweeps 200
"""

import argparse
import json
import sys
from pathlib import Path


def load(path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        sys.exit(f"error: {path}: {e}")


def metric(report, name, path):
    """A metric of a recc report: the cv mean, or the train metrics."""
    table = report.get("mean") if report.get("command") == "cv" else report.get("metrics")
    if not isinstance(table, dict) or name not in table:
        sys.exit(f"error: {path}: no metric `{name}` (has {', '.join(table or {})})")
    return float(table[name])


def per_sweep(cv, sweeps):
    folds = cv.get("folds") or []
    if not folds:
        return None
    return sum(float(f["seconds"]) for f in folds) / len(folds) / sweeps


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--peers", required=True)
    p.add_argument("--fm-side", help="recc cv of the FM with side features")
    p.add_argument("--bmf", help="recc cv of biased MF")
    p.add_argument("--wals", required=True, help="recc train of weighted ALS on Last.fm")
    p.add_argument("--sweeps", type=int, required=True, help="Gibbs sweeps, burn-in included")
    p.add_argument("--k", type=int, default=10)
    a = p.parse_args()

    peers = load(a.peers)
    myfm = peers.get("myfm", {})
    implicit = peers.get("implicit", {})
    rows = []

    def row(figure, recc, peer, fmt="{:.4f}"):
        show = lambda v: "n/a" if v is None else fmt.format(v)
        ratio = f"{recc / peer:.3f}" if recc is not None and peer else "n/a"
        rows.append((figure, show(recc), show(peer), ratio))

    sets = myfm.get("sets", {})
    for label, path, fs in (
        ("(a) FM side features", a.fm_side, "side"),
        ("(c) biased MF", a.bmf, "mf"),
    ):
        if path is None:
            continue
        report = load(path)
        peer = sets.get(fs, {})
        row(f"ML-100k {label}: RMSE", metric(report, "rmse", path), peer.get("rmse_mean"))
        ms = per_sweep(report, a.sweeps)
        peer_ms = peer.get("seconds_per_sweep_mean")
        row(
            f"ML-100k {label}: ms/sweep",
            None if ms is None else ms * 1000,
            None if peer_ms is None else peer_ms * 1000,
            "{:.1f}",
        )
    if a.fm_side is not None:
        implicit_set = sets.get("side+implicit", {})
        row("ML-100k (b) + implicit sets: RMSE", None, implicit_set.get("rmse_mean"))

    wals = load(a.wals)
    cg = implicit.get("solvers", {}).get("cg", {})
    exact = implicit.get("solvers", {}).get("exact", {})
    for name, recc_key, peer_key in (
        (f"precision@{a.k}", f"precision@{a.k}", "precision"),
        ("AUC", "auc", "auc"),
    ):
        value = metric(wals, recc_key, a.wals)
        row(f"Last.fm WALS: {name} (implicit CG)", value, cg.get(peer_key))
        row(f"Last.fm WALS: {name} (implicit exact)", value, exact.get(peer_key))
    seconds = float(wals["seconds"]) if "seconds" in wals else None
    row("Last.fm WALS: fit s (implicit CG)", seconds, cg.get("fit_seconds"), "{:.2f}")
    row("Last.fm WALS: fit s (implicit exact)", seconds, exact.get("fit_seconds"), "{:.2f}")

    width = max(len(r[0]) for r in rows)
    print(f"{'figure':<{width}}  {'recc':>9}  {'peer':>9}  {'recc/peer':>9}")
    for figure, recc, peer, ratio in rows:
        print(f"{figure:<{width}}  {recc:>9}  {peer:>9}  {ratio:>9}")
    print(
        "peers: myFM "
        f"{myfm.get('version', 'n/a')}, implicit {implicit.get('version', 'n/a')}; "
        "RMSE and seconds: lower is better; precision and AUC: higher"
    )
    if a.fm_side is not None:
        print("(b): recc's MovieLens reader has no rated-item or rater columns, so recc has no figure")


if __name__ == "__main__":
    main()
