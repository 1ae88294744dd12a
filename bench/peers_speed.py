"""Training speed of peer libraries: biased matrix factorisation on MovieLens-100k.

Each peer fits biased MF (global bias + user/item biases + k factors) on one
given fold's base file (u1.base: 80,000 ratings) on one thread, with the
process pinned to one core. Only the fitting is timed: reading the data,
building each library's input (Surprise trainset, torch tensors, Vowpal
Wabbit's cache) and constructing the torch module / VW workspace are left out.
Reported per peer: median wall seconds over the repeats, updates/s = ratings x
epochs / seconds, and RMSE on the fold's test file (predictions clipped to
[1, 5]) to show that it really trained.

    python bench/peers_speed.py [--data DIR] [--fold u1] [--factors 32]
                                [--epochs 20] [--repeats 3] [--json]

Peers (any that is not installed is reported and skipped):
  surprise  surprise.SVD(biased=True), default lr 0.005 / reg 0.02 (Cython SGD)
  svdpp     surprise.SVDpp: SVD++ with the user's rated items (Cython SGD)
  nmf       surprise.NMF: non-negative MF by multiplicative updates
  torch     nn.Embedding biased MF, torch.optim.SGD on shuffled mini-batches
  vw        Vowpal Wabbit --rank k -q ui (the movielens demo recipe), cached passes
"""

import os

# One thread everywhere, before numpy / torch load their thread pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def load(path):
    """user, item, rating columns of a MovieLens u*.base / u*.test file."""
    a = np.loadtxt(path, dtype=np.int64, delimiter="\t", usecols=(0, 1, 2), ndmin=2)
    return a[:, 0], a[:, 1], a[:, 2]


def rmse(pred, rating):
    pred = np.clip(np.asarray(pred, dtype=np.float64), 1.0, 5.0)
    return float(np.sqrt(np.mean((pred - rating) ** 2)))


def timed(fn):
    """Wall and process-CPU seconds of fn()."""
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


# --- Surprise -----------------------------------------------------------------


def surprise_peer(a, base, test, rep):
    import surprise
    from surprise import SVD, Dataset, Reader

    reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    trainset = Dataset.load_from_file(str(base), reader).build_full_trainset()
    algo = SVD(n_factors=a.factors, n_epochs=a.epochs, biased=True, random_state=rep)
    wall, cpu = timed(lambda: algo.fit(trainset))

    u, i, r = load(test)
    pred = [algo.predict(str(uu), str(ii)).est for uu, ii in zip(u, i)]
    return dict(
        version=surprise.__version__,
        seconds=wall,
        cpu_seconds=cpu,
        rmse=rmse(pred, r),
        config=f"SVD lr_all={algo.lr_bu} reg_all={algo.reg_bu} init_std={algo.init_std_dev}",
    )


def surprise_algo_peer(make, label):
    """A Surprise algorithm other than SVD, fitted and checked like SVD."""

    def peer(a, base, test, rep):
        import surprise
        from surprise import Dataset, Reader

        reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
        trainset = Dataset.load_from_file(str(base), reader).build_full_trainset()
        algo = make(a, rep)
        wall, cpu = timed(lambda: algo.fit(trainset))
        u, i, r = load(test)
        pred = [algo.predict(str(uu), str(ii)).est for uu, ii in zip(u, i)]
        return dict(
            version=surprise.__version__,
            seconds=wall,
            cpu_seconds=cpu,
            rmse=rmse(pred, r),
            config=f"{label}(n_factors={a.factors}, n_epochs={a.epochs}) with its defaults",
        )

    return peer


def _svdpp(a, rep):
    from surprise import SVDpp

    return SVDpp(n_factors=a.factors, n_epochs=a.epochs, random_state=rep)


def _nmf(a, rep):
    from surprise import NMF

    return NMF(n_factors=a.factors, n_epochs=a.epochs, random_state=rep)


# --- PyTorch ------------------------------------------------------------------


def torch_peer(a, base, test, rep):
    import torch
    from torch import nn

    torch.set_num_threads(1)

    class BiasedMF(nn.Module):
        def __init__(self, n_users, n_items, k, mean):
            super().__init__()
            self.p = nn.Embedding(n_users, k)
            self.q = nn.Embedding(n_items, k)
            self.bu = nn.Embedding(n_users, 1)
            self.bi = nn.Embedding(n_items, 1)
            # Global bias fixed at the training mean: with mean-reduced loss and
            # the large lr the embeddings need, a learnt scalar bias diverges.
            self.register_buffer("mu", torch.tensor(mean))
            nn.init.normal_(self.p.weight, std=0.1)
            nn.init.normal_(self.q.weight, std=0.1)
            nn.init.zeros_(self.bu.weight)
            nn.init.zeros_(self.bi.weight)

        def forward(self, u, i):
            p, q = self.p(u), self.q(i)
            bu, bi = self.bu(u).squeeze(1), self.bi(i).squeeze(1)
            pred = self.mu + bu + bi + (p * q).sum(1)
            # L2 on the rows this batch touched (per rating, as in SGD MF).
            l2 = (p * p).sum(1) + (q * q).sum(1) + bu * bu + bi * bi
            return pred, l2

    u, i, r = load(base)
    tu, ti, tr = load(test)
    n_users = int(max(u.max(), tu.max())) + 1
    n_items = int(max(i.max(), ti.max())) + 1
    U, I = torch.from_numpy(u), torch.from_numpy(i)
    R = torch.from_numpy(r).float()
    n, bs = len(R), a.torch_batch

    torch.manual_seed(rep)
    gen = torch.Generator().manual_seed(rep)
    model = BiasedMF(n_users, n_items, a.factors, float(R.mean()))
    opt = torch.optim.SGD(model.parameters(), lr=a.torch_lr)

    def fit():
        model.train()
        for _ in range(a.epochs):
            perm = torch.randperm(n, generator=gen)
            for s in range(0, n, bs):
                b = perm[s : s + bs]
                pred, l2 = model(U[b], I[b])
                loss = nn.functional.mse_loss(pred, R[b]) + a.torch_reg * l2.mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

    wall, cpu = timed(fit)

    with torch.no_grad():
        pred, _ = model(torch.from_numpy(tu), torch.from_numpy(ti))
    return dict(
        version=torch.__version__,
        seconds=wall,
        cpu_seconds=cpu,
        rmse=rmse(pred.numpy(), tr),
        config=f"SGD lr={a.torch_lr} (mean MSE) reg={a.torch_reg} batch={bs} threads={torch.get_num_threads()}",
    )


# --- Vowpal Wabbit ------------------------------------------------------------


def vw_peer(a, base, test, rep):
    from vowpalwabbit import pyvw

    u, i, r = load(base)
    tu, ti, tr = load(test)
    # Recipe of VW's movielens demo; --holdout_off so every pass sees all
    # 80,000 ratings (multi-pass VW otherwise holds out 1 in 10 and may stop early).
    learn = (
        f"--rank {a.factors} -q ui --l2 {a.vw_l2} --learning_rate {a.vw_lr} "
        f"--decay_learning_rate 0.97 --power_t 0 -b 18 --holdout_off --random_seed {rep} --quiet"
    ).split()
    with tempfile.TemporaryDirectory() as tmp:
        text, cache, model = f"{tmp}/train.vw", f"{tmp}/train.cache", f"{tmp}/model.vw"
        with open(text, "w") as f:
            f.writelines(f"{rr} |u {uu} |i {ii}\n" for uu, ii, rr in zip(u, i, r))
        # Parse the text once into VW's binary cache (data loading, not timed).
        w = pyvw.pylibvw.vw(learn + ["-d", text, "--cache_file", cache, "-k"])
        w.run_parser()
        w.finish()

        # Construct the workspace (allocates 2^18 weight rows) outside the timing,
        # then time the passes over the cache.
        setup = time.perf_counter()
        w = pyvw.pylibvw.vw(learn + ["-d", text, "--cache_file", cache, "--passes", str(a.epochs), "-f", model])
        setup = time.perf_counter() - setup
        wall, cpu = timed(w.run_parser)
        w.finish()

        p = pyvw.Workspace(f"-i {model} -t --quiet")
        pred = [p.predict(f"|u {uu} |i {ii}") for uu, ii in zip(tu, ti)]
        p.finish()
    return dict(
        version=version("vowpalwabbit"),
        seconds=wall,
        cpu_seconds=cpu,
        rmse=rmse(pred, tr),
        setup_seconds=setup,
        config=f"--rank {a.factors} -q ui --l2 {a.vw_l2} --learning_rate {a.vw_lr} "
        "--decay_learning_rate 0.97 --power_t 0 -b 18 --holdout_off (cache)",
    )


PEERS = {
    "surprise": surprise_peer,
    "svdpp": surprise_algo_peer(_svdpp, "SVDpp"),
    "nmf": surprise_algo_peer(_nmf, "NMF"),
    "torch": torch_peer,
    "vw": vw_peer,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "ml-100k"))
    p.add_argument("--fold", default="u1")
    p.add_argument("--factors", type=int, default=32)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--peers", default="surprise,torch,vw", help="comma-separated subset of " + ",".join(PEERS))
    p.add_argument("--torch-batch", type=int, default=1024)
    p.add_argument("--torch-lr", type=float, default=3.0, help="SGD lr on the batch-mean loss")
    p.add_argument("--torch-reg", type=float, default=0.02)
    p.add_argument("--vw-lr", type=float, default=0.015)
    p.add_argument("--vw-l2", type=float, default=0.001)
    p.add_argument("--cpu", type=int, default=None,
                   help="CPU to pin the process to (default: the first one allowed; -1: no pinning)")
    p.add_argument("--json", action="store_true", help="one JSON object per peer per line")
    a = p.parse_args()

    # Pin to one core so that helper threads (VW's parser thread) share it with
    # the learner: the figures are then one-core figures for every peer.
    if a.cpu is None:
        a.cpu = min(os.sched_getaffinity(0))
    if a.cpu >= 0:
        os.sched_setaffinity(0, {a.cpu})

    names = a.peers.split(",")
    for name in names:
        if name not in PEERS:
            p.error(f"unknown peer {name!r} (known: {', '.join(PEERS)})")

    base, test = Path(a.data) / f"{a.fold}.base", Path(a.data) / f"{a.fold}.test"
    for f in (base, test):
        if not f.is_file():
            sys.exit(f"missing {f} (pass --data DIR holding MovieLens-100k)")
    n_ratings = len(load(base)[2])

    rows = []
    for name in names:
        try:
            runs = [PEERS[name](a, base, test, rep) for rep in range(a.repeats)]
        except ImportError as e:
            rows.append(dict(peer=name, error=f"not installed: {e}"))
            continue
        secs = [x["seconds"] for x in runs]
        med = statistics.median(secs)
        row = dict(
            peer=name,
            version=runs[0]["version"],
            fold=a.fold,
            ratings=n_ratings,
            factors=a.factors,
            epochs=a.epochs,
            repeats=a.repeats,
            seconds=round(med, 4),
            seconds_all=[round(s, 4) for s in secs],
            cpu_seconds=round(statistics.median(x["cpu_seconds"] for x in runs), 4),
            updates_per_s=round(n_ratings * a.epochs / med),
            test_rmse=round(statistics.median(x["rmse"] for x in runs), 4),
            config=runs[0]["config"],
        )
        if "setup_seconds" in runs[0]:
            row["setup_seconds_excluded"] = round(statistics.median(x["setup_seconds"] for x in runs), 4)
        row.update(pinned_cpu=a.cpu if a.cpu >= 0 else None, python=platform.python_version(), numpy=np.__version__)
        rows.append(row)

    if a.json:
        for row in rows:
            print(json.dumps(row), flush=True)
        return

    pin = f"pinned to CPU {a.cpu}" if a.cpu >= 0 else "not pinned"
    print(f"MovieLens-100k {a.fold}.base: {n_ratings} ratings, {a.factors} factors, "
          f"{a.epochs} epochs, median of {a.repeats}, one thread, {pin}")
    print(f"{'peer':<9} {'version':<15} {'epochs':>6} {'wall s':>8} {'cpu s':>8} {'updates/s':>11} {'RMSE':>7}")
    for row in rows:
        if "error" in row:
            print(f"{row['peer']:<9} {row['error']}")
            continue
        print(f"{row['peer']:<9} {row['version']:<15} {row['epochs']:>6} {row['seconds']:>8.3f} "
              f"{row['cpu_seconds']:>8.3f} {row['updates_per_s']:>11,} {row['test_rmse']:>7.4f}")
    for row in rows:
        if "config" in row:
            print(f"  {row['peer']}: {row['config']}")
    print(f"  python {platform.python_version()}, numpy {np.__version__}")


if __name__ == "__main__":
    main()
