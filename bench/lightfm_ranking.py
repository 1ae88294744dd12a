"""LightFM on exactly the rows recc trained and tested on.

recc writes them with `recc train ... --write-split DIR` (DIR/train.tsv and
DIR/test.tsv, raw ids, a header naming the columns). This script fits
LightFM on train.tsv and reports precision@k and AUC on test.tsv, with the
training interactions excluded from the ranking, as recc does.

    python bench/lightfm_ranking.py DIR [--loss bpr] [--components 32] [--epochs 30] [--json]
"""

import argparse
import csv
import json
import sys
import time

import numpy as np
import scipy.sparse as sp
from lightfm import LightFM, __version__
from lightfm.evaluation import auc_score, precision_at_k


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [(r["user"], r["item"]) for r in rows]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--loss", default="bpr")
    p.add_argument("--components", type=int, default=32)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    a = p.parse_args()

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
    model = LightFM(no_components=a.components, loss=a.loss, random_state=a.seed)
    start = time.time()
    model.fit(tr, epochs=a.epochs, num_threads=a.threads)
    fit_s = time.time() - start
    prec = precision_at_k(model, te, train_interactions=tr, k=a.k, num_threads=a.threads).mean()
    auc = auc_score(model, te, train_interactions=tr, num_threads=a.threads).mean()
    if a.json:
        print(json.dumps({
            "lightfm": __version__, "loss": a.loss, "components": a.components,
            "epochs": a.epochs, "k": a.k, "precision": float(prec), "auc": float(auc),
            "seconds": fit_s, "train_pairs": int(tr.nnz), "test_pairs": int(te.nnz),
        }))
        return 0
    print(
        f"lightfm {__version__} loss={a.loss} components={a.components} epochs={a.epochs}: "
        f"precision@{a.k} {prec:.4f}  auc {auc:.4f}  ({fit_s:.1f} s fit, "
        f"{tr.nnz} train / {te.nnz} test pairs)"
    )


if __name__ == "__main__":
    sys.exit(main())
