"""implicit's BPR on exactly the rows recc trained and tested on.

recc writes them with `recc train ... --write-split DIR` (DIR/train.tsv and
DIR/test.tsv, raw ids, a header naming the columns). This script fits
`implicit.bpr.BayesianPersonalizedRanking` on train.tsv and reports its fit
time and precision@k on test.tsv, with the training interactions left out of
the ranking, as recc does.

    python bench/implicit_ranking.py DIR [--factors 32] [--epochs 50] [--threads 1] [--json]
"""

import argparse
import csv
import json
import os
import sys
import time

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import scipy.sparse as sp


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(r["user"], r["item"]) for r in rows]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--factors", type=int, default=32)
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args()

    import implicit
    from implicit.bpr import BayesianPersonalizedRanking
    from implicit.evaluation import precision_at_k

    train, test = read(f"{a.dir}/train.tsv"), read(f"{a.dir}/test.tsv")
    users = {u: k for k, u in enumerate(sorted({u for u, _ in train + test}))}
    items = {i: k for k, i in enumerate(sorted({i for _, i in train + test}))}
    shape = (len(users), len(items))

    def matrix(pairs):
        pairs = sorted(set(pairs))
        r = [users[u] for u, _ in pairs]
        c = [items[i] for _, i in pairs]
        return sp.coo_matrix((np.ones(len(pairs), dtype=np.float32), (r, c)), shape=shape).tocsr()

    tr, te = matrix(train), matrix(test)
    model = BayesianPersonalizedRanking(
        factors=a.factors, iterations=a.epochs, num_threads=a.threads, random_state=a.seed
    )
    start = time.perf_counter()
    model.fit(tr, show_progress=False)
    fit_s = time.perf_counter() - start
    prec = precision_at_k(model, tr, te, K=a.k, show_progress=False, num_threads=a.threads)
    out = {
        "implicit": implicit.__version__, "factors": a.factors, "epochs": a.epochs,
        "threads": a.threads, "k": a.k, "precision": float(prec), "seconds": fit_s,
        "train_pairs": int(tr.nnz), "updates_per_second": tr.nnz * a.epochs / fit_s,
    }
    if a.json:
        print(json.dumps(out))
        return 0
    print(
        f"implicit {implicit.__version__} BPR factors={a.factors} epochs={a.epochs}: "
        f"precision@{a.k} {prec:.4f}  ({fit_s:.2f} s fit, {tr.nnz} train pairs)"
    )


if __name__ == "__main__":
    sys.exit(main())
