"""The peers of recc's closed-form solvers, on the rows recc trains and tests on.

Bayesian factorization machines by Gibbs sampling (myFM) on MovieLens-100k's
given folds u1-u5, and weighted ALS for implicit feedback (the `implicit`
library) on Last.fm-2k with recc's own per-user holdout. Prints one table and,
with --json PATH, writes every figure to PATH.

    python bench/peers_solvers.py [--ml-split DIR | --ml100k DIR]
                                  [--lastfm-split DIR] [--lastfm DIR]
                                  [--only myfm,implicit] [--json PATH]

MovieLens-100k (myFM 0.4, `MyFMRegressor`, rank 10, 200 sweeps; by default
myFM's own burn-in, `n_kept_samples = n_iter - 5`: 5 sweeps thrown away, the
predictions of the last 195 averaged). Three feature sets:

  mf            one-hot user and item: Bayesian biased MF (BPMF with biases)
  side          mf + age group, gender, occupation (u.user) and genres (u.item)
  side+implicit side + the user's rated-item set and the item's rater set from
                the training rows, each member weighted 1/sqrt(n) as in myFM's
                ml-100k example (SVD++-style implicit features)

The features are the columns recc's feature bags read (docs/data.md §7.3):
age in recc's seven age groups, and a film's n genres weighted 1/n each
(--genre-weight one for myFM's tutorial's weight 1). Each column is one
myFM group (its own prior mean and variance), as myFM's documentation
recommends. Users' and items' features are given as myFM relation blocks,
its fastest input; myFM samples on one thread. RMSE is on the raw
predictions (not clipped), as recc measures it; time per sweep is the fit's
wall time divided by the sweeps, and its process CPU time likewise (the
figure to read on a busy machine).

The folds are read from recc's split files when --ml-split names them
(`recc cv ... --split given --write-split DIR` writes DIR/u1/train.tsv,
DIR/u1/test.tsv, ...), otherwise from the data's own u1.base/u1.test ...
files with u.user and u.item: the same rows either way.

Last.fm-2k (implicit 0.7, `implicit.cpu.als.AlternatingLeastSquares`,
factors 64, 15 iterations, regularization 0.01, 2 threads, one BLAS thread).
Every training row is a positive with confidence c = 1 + alpha * plays,
alpha = 40 (Hu, Koren & Volinsky 2008). implicit takes the stored value of
its user-item matrix as the confidence itself (it solves with
Y'Y + Y'(C_u - I)Y + reg*I and b = Y'C_u p_u, unstored cells having c = 1,
p = 0), and its `alpha` parameter only multiplies the stored values, so the
matrix holds 1 + 40 * plays and `alpha` stays 1 (--confidence log: the
paper's other form, 1 + alpha * log(1 + plays / epsilon)). Two solvers: implicit's
default conjugate gradient (3 steps per row) and its exact solve
(use_cg=False).

The rows are recc's: --lastfm-split names the folder that
`recc train MODEL --data lastfm:DIR --split user:0.2 --seed 42 --write-split
FOLDER` wrote (train.tsv, test.tsv). The catalogue and the item order that
breaks ties are recc's too: every artist of user_artists.dat (--lastfm), in
the order of the file. Precision@k and AUC follow recc's `rank_user`
(runtime/src/metrics.rs) exactly: for each user with test rows, the user's
training items are removed, the rest of the catalogue ranked by score (ties:
lower item index first); precision@k = relevant items in the top k / k; AUC =
the fraction of (relevant, other ranked item) pairs in which the relevant item
scores higher, ties counting 1/2 (0.5 when nothing else is ranked); a user
whose test items are all training items scores 0; the figures are means over
those users.
"""

import os

# One BLAS thread: implicit parallelises over rows itself and warns otherwise.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
# myFM draws a progress bar on every fit; the script prints its own lines.
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import csv
import json
import platform
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import scipy.sparse as sps

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"

AGE_GROUPS = ["under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"]
AGE_BOUNDS = [18, 25, 35, 45, 50, 56]
FEATURE_SETS = ["mf", "side", "side+implicit"]


class Fail(Exception):
    """A problem with the input, reported as one line and exit status 2."""


def pkg_version(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None


# --- MovieLens-100k -------------------------------------------------------------


def age_group(age):
    """recc's bucket of an age (runtime/src/data/movielens.rs)."""
    return AGE_GROUPS[sum(1 for b in AGE_BOUNDS if age >= b)]


def read_tsv(path):
    """A recc split file: header line, tab-separated, bags written a|b|c."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    except OSError as e:
        raise Fail(f"{path}: {e.strerror}") from None
    if not rows:
        raise Fail(f"{path}: empty file")
    # A header field may declare its kind (`genres:bag(genre)`); the name is before ':'.
    header = [h.split(":", 1)[0] for h in rows[0]]
    out = []
    for line, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise Fail(f"{path}:{line}: expected {len(header)} fields, found {len(r)}")
        out.append(dict(zip(header, r)))
    return out


def need(rows, path, columns):
    if rows:
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            raise Fail(f"{path}: no column {', '.join(missing)} (has {', '.join(rows[0])})")


def ml_fold_from_split(split_dir, fold):
    """One given fold from `recc cv --write-split`: lists of row dicts."""
    cols = ["user", "item", "rating", "age_group", "gender", "occupation", "genres"]
    out = []
    for name in ("train", "test"):
        path = split_dir / fold / f"{name}.tsv"
        rows = read_tsv(path)
        need(rows, path, cols)
        out.append(rows)
    return out


def ml_fold_from_data(data_dir, fold):
    """One given fold from MovieLens's own files, with recc's columns."""

    def lines(name, sep):
        path = data_dir / name
        try:
            text = path.read_text(encoding="latin-1")
        except OSError as e:
            raise Fail(f"{path}: {e.strerror}") from None
        return [(path, n, ln.split(sep)) for n, ln in enumerate(text.splitlines(), 1) if ln]

    genre_names = {}
    for _, _, f in lines("u.genre", "|"):
        if len(f) == 2:
            genre_names[int(f[1])] = f[0]
    users = {}
    for path, n, f in lines("u.user", "|"):
        if len(f) < 4:
            raise Fail(f"{path}:{n}: expected id|age|gender|occupation|zip")
        users[f[0]] = dict(
            age_group=age_group(float(f[1])), gender=f[2], occupation=f[3]
        )
    items = {}
    for path, n, f in lines("u.item", "|"):
        flags = f[5:]
        if len(flags) != len(genre_names):
            raise Fail(f"{path}:{n}: expected {len(genre_names)} genre flags, found {len(flags)}")
        items[f[0]] = "|".join(genre_names[k] for k, v in enumerate(flags) if v == "1")
    out = []
    for ext in ("base", "test"):
        rows = []
        for path, n, f in lines(f"{fold}.{ext}", "\t"):
            if len(f) < 3 or f[0] not in users or f[1] not in items:
                raise Fail(f"{path}:{n}: expected user, item, rating of a known user and film")
            rows.append(dict(user=f[0], item=f[1], rating=f[2], genres=items[f[1]], **users[f[0]]))
        out.append(rows)
    return out


class Encoder:
    """Dense indices for one column's values, fixed before fitting."""

    def __init__(self, values):
        self.index = {}
        for v in values:
            self.index.setdefault(v, len(self.index))

    def __len__(self):
        return len(self.index)


def block_matrix(keys, columns):
    """The feature rows of `keys` (users or items) as one CSR matrix.

    `columns` is a list of (encoder, fn) where fn(key) gives [(value, weight)];
    each column occupies its own range of feature indices, in order.
    """
    data, rows, cols = [], [], []
    offset = 0
    for enc, fn in columns:
        for r, key in enumerate(keys):
            for value, weight in fn(key):
                j = enc.index.get(value)
                if j is not None:
                    rows.append(r)
                    cols.append(offset + j)
                    data.append(weight)
        offset += len(enc)
    return sps.csr_matrix((data, (rows, cols)), shape=(len(keys), offset), dtype=np.float64)


def myfm_fold(a, train, test, feature_set):
    import myfm
    from myfm import RelationBlock

    side = feature_set != "mf"
    implicit = feature_set == "side+implicit"
    everyone = train + test
    user_info, item_genres = {}, {}
    for r in everyone:
        user_info[r["user"]] = r
        item_genres[r["item"]] = [g for g in r["genres"].split("|") if g]
    users = Encoder(r["user"] for r in everyone)
    items = Encoder(r["item"] for r in everyone)

    rated, raters = {}, {}
    for r in train:
        rated.setdefault(r["user"], []).append(r["item"])
        raters.setdefault(r["item"], []).append(r["user"])

    def norm(n):
        return 1.0 / (n**0.5 if a.implicit_norm == "sqrt" else n)

    def one(value):
        return [(value, 1.0)]

    user_cols = [(users, one)]
    item_cols = [(items, one)]
    if side:
        for col in ("age_group", "gender", "occupation"):
            enc = Encoder(user_info[u][col] for u in users.index)
            user_cols.append((enc, lambda u, col=col: one(user_info[u][col])))
        genres = Encoder(g for i in items.index for g in item_genres[i])
        gw = (lambda n: 1.0 / n) if a.genre_weight == "mean" else (lambda n: 1.0)
        item_cols.append((genres, lambda i: [(g, gw(len(item_genres[i]))) for g in item_genres[i]]))
    if implicit:
        user_cols.append((items, lambda u: [(i, norm(len(rated[u]))) for i in rated.get(u, [])]))
        item_cols.append((users, lambda i: [(u, norm(len(raters[i]))) for u in raters.get(i, [])]))

    user_keys = list(users.index)
    item_keys = list(items.index)
    user_x = block_matrix(user_keys, user_cols)
    item_x = block_matrix(item_keys, item_cols)
    group_shapes = [len(enc) for enc, _ in user_cols] + [len(enc) for enc, _ in item_cols]
    if a.single_group:
        group_shapes = None

    def blocks(rows):
        u = np.fromiter((users.index[r["user"]] for r in rows), dtype=np.int64, count=len(rows))
        i = np.fromiter((items.index[r["item"]] for r in rows), dtype=np.int64, count=len(rows))
        return [RelationBlock(u, user_x), RelationBlock(i, item_x)]

    y_train = np.array([float(r["rating"]) for r in train])
    y_test = np.array([float(r["rating"]) for r in test])
    rel_train, rel_test = blocks(train), blocks(test)
    empty = sps.csr_matrix((len(train), 0), dtype=np.float64)
    kept = a.sweeps - a.burn_in

    fm = myfm.MyFMRegressor(rank=a.rank, random_seed=a.seed)
    start, cpu = time.perf_counter(), time.process_time()
    fm.fit(
        empty,
        y_train,
        X_rel=rel_train,
        n_iter=a.sweeps,
        n_kept_samples=kept,
        group_shapes=group_shapes,
        # Nothing per sweep: myFM's default callback formats a status line.
        callback=lambda *_: (False, None),
    )
    fit_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
    pred = fm.predict(sps.csr_matrix((len(test), 0), dtype=np.float64), rel_test)
    return dict(
        rmse=float(np.sqrt(np.mean((pred - y_test) ** 2))),
        fit_seconds=fit_s,
        seconds_per_sweep=fit_s / a.sweeps,
        cpu_seconds_per_sweep=cpu_s / a.sweeps,
        train_rows=len(train),
        test_rows=len(test),
        features=int(user_x.shape[1] + item_x.shape[1]),
    )


def run_myfm(a):
    if pkg_version("myfm") is None:
        return {"skipped": "myfm is not installed (pip install -r bench/requirements-solvers.txt)"}
    folds = a.folds.split(",")
    result = dict(
        peer="myfm",
        version=pkg_version("myfm"),
        rank=a.rank,
        sweeps=a.sweeps,
        burn_in=a.burn_in,
        kept_samples=a.sweeps - a.burn_in,
        genre_weight=a.genre_weight,
        implicit_norm=a.implicit_norm,
        groups="one per column" if not a.single_group else "one",
        source=str(a.ml_split) if a.ml_split else str(a.ml100k),
        sets={},
    )
    data = {}
    for fold in folds:
        if a.ml_split:
            data[fold] = ml_fold_from_split(a.ml_split, fold)
        else:
            data[fold] = ml_fold_from_data(a.ml100k, fold)
    for fs in a.sets.split(","):
        per_fold = {}
        for fold in folds:
            train, test = data[fold]
            per_fold[fold] = myfm_fold(a, train, test, fs)
            f = per_fold[fold]
            print(
                f"  myfm {fs:<14} {fold}: rmse {f['rmse']:.4f}  "
                f"{f['seconds_per_sweep'] * 1000:.1f} ms/sweep "
                f"({f['cpu_seconds_per_sweep'] * 1000:.1f} ms CPU)",
                file=sys.stderr,
            )
        rmses = [f["rmse"] for f in per_fold.values()]
        per_sweep = [f["seconds_per_sweep"] for f in per_fold.values()]
        cpu_per_sweep = [f["cpu_seconds_per_sweep"] for f in per_fold.values()]
        result["sets"][fs] = dict(
            folds=per_fold,
            rmse_mean=float(np.mean(rmses)),
            rmse_std=float(np.std(rmses, ddof=1)) if len(rmses) > 1 else 0.0,
            seconds_per_sweep_mean=float(np.mean(per_sweep)),
            cpu_seconds_per_sweep_mean=float(np.mean(cpu_per_sweep)),
            fit_seconds_total=float(sum(f["fit_seconds"] for f in per_fold.values())),
        )
    return result


# --- Last.fm-2k ------------------------------------------------------------------


def lastfm_catalogue(data_dir, train, test):
    """Users and items in recc's order: first appearance in user_artists.dat."""
    users, items = {}, {}
    path = data_dir / "user_artists.dat" if data_dir else None
    if path is not None and path.exists():
        with open(path, encoding="utf-8", errors="replace") as f:
            next(f, None)
            for n, line in enumerate(f, start=2):
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 3:
                    raise Fail(f"{path}:{n}: expected userID, artistID, weight")
                users.setdefault(fields[0], len(users))
                items.setdefault(fields[1], len(items))
    for r in train + test:
        users.setdefault(r["user"], len(users))
        items.setdefault(r["item"], len(items))
    return users, items


def rank_user(s, exclude, relevant, k):
    """(precision@k, AUC) of one user's scores over the catalogue, as recc's
    `rank_user`: `exclude` is removed from the ranking, `relevant` (deduplicated,
    excluded members ignored) are the hits."""
    n_items = s.shape[0]
    ranked = np.ones(n_items, dtype=bool)
    ranked[np.asarray(exclude, dtype=np.int64)] = False
    rel = np.unique([i for i in relevant if ranked[i]]).astype(np.int64)
    if rel.size == 0:
        return 0.0, 0.0
    cand = np.flatnonzero(ranked)
    # Highest score first, then the lower item index (np.lexsort: last key is primary).
    top = cand[np.lexsort((cand, -s[cand]))[:k]]
    precision = np.isin(top, rel).sum() / k if k else 0.0
    is_rel = np.zeros(n_items, dtype=bool)
    is_rel[rel] = True
    neg = np.sort(s[ranked & ~is_rel])
    if neg.size == 0:
        return float(precision), 0.5
    r = s[rel]
    below = np.searchsorted(neg, r, side="left").sum()
    not_above = np.searchsorted(neg, r, side="right").sum()
    return float(precision), float((below + 0.5 * (not_above - below)) / (rel.size * neg.size))


def rank_metrics(user_f, item_f, train_items, test_items, k):
    """Mean precision@k and AUC over the users with test rows; a user's scores
    are user_f[u] . item_f[i], or item_f[i] alone when user_f is None."""
    precision, auc = [], []
    users = sorted(test_items)
    batch = 256
    for start in range(0, len(users), batch):
        chunk = users[start : start + batch]
        if user_f is None:
            scores = np.broadcast_to(item_f.astype(np.float64), (len(chunk), item_f.shape[0]))
        else:
            scores = (user_f[chunk] @ item_f.T).astype(np.float64)
        for row, u in enumerate(chunk):
            p, a = rank_user(scores[row], train_items.get(u, []), test_items[u], k)
            precision.append(p)
            auc.append(a)
    return float(np.mean(precision)), float(np.mean(auc)), len(users)


def run_implicit(a):
    if pkg_version("implicit") is None:
        return {"skipped": "implicit is not installed (pip install -r bench/requirements-solvers.txt)"}
    if not a.lastfm_split:
        return {
            "skipped": "no --lastfm-split: the rows must be recc's "
            "(recc train MODEL --data lastfm:DIR --split user:0.2 --write-split FOLDER)"
        }
    from implicit.cpu.als import AlternatingLeastSquares

    paths = [a.lastfm_split / "train.tsv", a.lastfm_split / "test.tsv"]
    train, test = (read_tsv(p) for p in paths)
    for p, rows in zip(paths, (train, test)):
        need(rows, p, ["user", "item", "plays"])
    users, items = lastfm_catalogue(a.lastfm, train, test)

    tr_u = np.array([users[r["user"]] for r in train], dtype=np.int64)
    tr_i = np.array([items[r["item"]] for r in train], dtype=np.int64)
    plays = np.array([float(r["plays"]) for r in train])
    if a.confidence == "linear":
        confidence = 1.0 + a.alpha * plays
        conf_text = f"1 + {a.alpha:g} * plays"
    else:
        confidence = 1.0 + a.alpha * np.log1p(plays / a.epsilon)
        conf_text = f"1 + {a.alpha:g} * log(1 + plays / {a.epsilon:g})"
    confidence = confidence.astype(np.float32)
    cui = sps.csr_matrix((confidence, (tr_u, tr_i)), shape=(len(users), len(items)))
    train_items, test_items = {}, {}
    for u, i in zip(tr_u.tolist(), tr_i.tolist()):
        train_items.setdefault(u, []).append(i)
    for r in test:
        test_items.setdefault(users[r["user"]], []).append(items[r["item"]])

    result = dict(
        peer="implicit",
        version=pkg_version("implicit"),
        factors=a.factors,
        iterations=a.iterations,
        regularization=a.regularization,
        confidence=f"{conf_text}, passed as the matrix's values (implicit alpha=1)",
        threads=a.threads,
        k=a.k,
        split=str(a.lastfm_split),
        users=len(users),
        items=len(items),
        train_rows=len(train),
        test_rows=len(test),
        solvers={},
    )
    # recc's popularity baseline (`--baseline`): items by their number of
    # distinct training users. Its figures, beside recc's own, check that the
    # rows, the catalogue and the metrics here are recc's.
    popularity = np.zeros(len(items))
    for _, i in {(u, i) for u, i in zip(tr_u.tolist(), tr_i.tolist())}:
        popularity[i] += 1
    prec, auc, _ = rank_metrics(None, popularity, train_items, test_items, a.k)
    result["popularity"] = dict(precision=prec, auc=auc)
    print(f"  popularity: precision@{a.k} {prec:.4f}  auc {auc:.4f}", file=sys.stderr)
    for name, use_cg in (("cg", True), ("exact", False)):
        model = AlternatingLeastSquares(
            factors=a.factors,
            regularization=a.regularization,
            alpha=1.0,
            iterations=a.iterations,
            use_cg=use_cg,
            num_threads=a.threads,
            random_state=a.seed,
            calculate_training_loss=False,
        )
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(cui, show_progress=False)
        fit_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu
        prec, auc, n_users = rank_metrics(
            np.asarray(model.user_factors), np.asarray(model.item_factors),
            train_items, test_items, a.k,
        )
        result["solvers"][name] = dict(
            use_cg=use_cg,
            precision=prec,
            auc=auc,
            users_ranked=n_users,
            fit_seconds=fit_s,
            fit_cpu_seconds=cpu_s,
            seconds_per_iteration=fit_s / a.iterations,
        )
        print(
            f"  implicit als ({name}): precision@{a.k} {prec:.4f}  auc {auc:.4f}  "
            f"{fit_s:.2f} s fit ({cpu_s:.2f} s CPU)",
            file=sys.stderr,
        )
    return result


# --- Output ----------------------------------------------------------------------


def table(results, k):
    lines = []
    m = results.get("myfm", {})
    if "skipped" in m:
        lines.append(f"myfm: skipped ({m['skipped']})")
    elif m:
        lines.append(
            f"MovieLens-100k folds {','.join(next(iter(m['sets'].values()))['folds'])}: "
            f"myFM {m['version']} Gibbs, rank {m['rank']}, {m['sweeps']} sweeps "
            f"(burn-in {m['burn_in']}, {m['kept_samples']} kept)"
        )
        lines.append(
            f"  {'features':<15} {'RMSE mean':>10} {'± sd':>7} {'ms/sweep':>9} {'CPU ms':>7}"
        )
        for fs, s in m["sets"].items():
            lines.append(
                f"  {fs:<15} {s['rmse_mean']:>10.4f} {s['rmse_std']:>7.4f} "
                f"{s['seconds_per_sweep_mean'] * 1000:>9.1f} "
                f"{s['cpu_seconds_per_sweep_mean'] * 1000:>7.1f}"
            )
    i = results.get("implicit", {})
    if "skipped" in i:
        lines.append(f"implicit: skipped ({i['skipped']})")
    elif i:
        lines.append(
            f"Last.fm-2k ({i['train_rows']} train / {i['test_rows']} test rows, "
            f"{i['items']} items): implicit {i['version']} ALS, {i['factors']} factors, "
            f"{i['iterations']} iterations, reg {i['regularization']}, "
            f"c = {i['confidence']}, {i['threads']} threads"
        )
        lines.append(
            f"  {'solver':<15} {'prec@' + str(k):>10} {'AUC':>7} {'fit s':>9} {'CPU s':>7}"
        )
        pop = i["popularity"]
        lines.append(f"  {'popularity':<15} {pop['precision']:>10.4f} {pop['auc']:>7.4f}")
        for name, s in i["solvers"].items():
            lines.append(
                f"  {name:<15} {s['precision']:>10.4f} {s['auc']:>7.4f} "
                f"{s['fit_seconds']:>9.2f} {s['fit_cpu_seconds']:>7.2f}"
            )
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="myfm,implicit", help="peers to run: myfm, implicit")
    p.add_argument("--json", type=Path, help="write all figures to this file")
    g = p.add_argument_group("MovieLens-100k (myFM)")
    g.add_argument("--ml100k", type=Path, default=DATA / "ml-100k")
    g.add_argument("--ml-split", type=Path, help="folder written by recc cv --split given --write-split")
    g.add_argument("--folds", default="u1,u2,u3,u4,u5")
    g.add_argument("--sets", default=",".join(FEATURE_SETS), help="feature sets: " + ", ".join(FEATURE_SETS))
    g.add_argument("--rank", type=int, default=10)
    g.add_argument("--sweeps", type=int, default=200)
    g.add_argument("--burn-in", type=int, help="default: myFM's own, n_iter - n_kept_samples = 5")
    g.add_argument("--genre-weight", choices=["mean", "one"], default="mean")
    g.add_argument("--implicit-norm", choices=["sqrt", "mean"], default="sqrt")
    g.add_argument("--single-group", action="store_true", help="one prior for all features")
    g = p.add_argument_group("Last.fm-2k (implicit)")
    g.add_argument("--lastfm", type=Path, default=DATA / "lastfm-2k")
    g.add_argument("--lastfm-split", type=Path, help="folder written by recc train --write-split")
    g.add_argument("--factors", type=int, default=64)
    g.add_argument("--iterations", type=int, default=15)
    g.add_argument("--regularization", type=float, default=0.01)
    g.add_argument("--alpha", type=float, default=40.0)
    g.add_argument(
        "--confidence",
        choices=["linear", "log"],
        default="linear",
        help="c = 1 + alpha * plays, or 1 + alpha * log(1 + plays / epsilon) (both Hu et al.)",
    )
    g.add_argument("--epsilon", type=float, default=1.0, help="of --confidence log")
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=42)
    a = p.parse_args()

    unknown = set(a.only.split(",")) - {"myfm", "implicit"}
    if unknown:
        p.error(f"--only: unknown peer {', '.join(sorted(unknown))} (myfm, implicit)")
    bad_sets = set(a.sets.split(",")) - set(FEATURE_SETS)
    if bad_sets:
        p.error(f"--sets: unknown feature set {', '.join(sorted(bad_sets))}")
    if a.epsilon <= 0:
        p.error("--epsilon must be positive")
    if a.sweeps < 1:
        p.error("--sweeps must be at least 1")
    if a.burn_in is None:
        # myFM's default: n_kept_samples = min(max(n_iter - 5, 5), n_iter).
        a.burn_in = a.sweeps - min(max(a.sweeps - 5, 5), a.sweeps)
    if not 0 <= a.burn_in < a.sweeps:
        p.error("--burn-in must be at least 0 and less than --sweeps")

    results = dict(
        machine=dict(python=platform.python_version(), cpu=platform.processor() or platform.machine(),
                     cores=os.cpu_count()),
        numpy=np.__version__,
    )
    try:
        if "myfm" in a.only:
            results["myfm"] = run_myfm(a)
        if "implicit" in a.only:
            results["implicit"] = run_implicit(a)
    except Fail as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(results, a.k))
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
