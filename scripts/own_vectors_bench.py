"""Trained vs random backbone kNN of `deepfusion train` on vector data sets written as .npz files.

The measurement behind the vectors preset's defaults (benchmarks/README.md, "Own data: vectors").
Each set is written once into OUT/data/<set>.npz; each (set, seed) runs the whole command

    deepfusion train data.name=npz data.root=OUT/data/<set>.npz train.seed=S train.threads=1 --no-progress

in a subprocess (timed from start to exit, evaluation included) and reads its eval.json. Nothing is
downloaded: scikit-learn's generators and bundled sets, and Fashion-MNIST from its Debian package.

    python scripts/own_vectors_bench.py --out /tmp/ownvec                 # every set, seeds 0 1 2
    python scripts/own_vectors_bench.py --out /tmp/ownvec --sets mc_a --seeds 0 -- data.aug_mix=0.2
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn.datasets
import torch
from sklearn.neural_network import MLPClassifier

from deepfusion.model.data import load_dataset
from deepfusion.model.runs.eval_result import EvalResult
from deepfusion.model.runs.layout import RunFolder
from deepfusion.model.runs.probes import knn_accuracy

FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx(path: Path) -> np.ndarray:
    data = gzip.open(path).read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def fashion_vectors(n_train=4000, n_test=1000, seed=0) -> dict:
    """Fashion-MNIST pixels as 784-d vectors (raw 0..255), a seeded subset of each official split."""
    rng = np.random.default_rng(seed)
    out = {}
    for part, prefix, n in (("", "train", n_train), ("_test", "t10k", n_test)):
        x, y = _idx(FASHION / f"{prefix}-images-idx3-ubyte.gz"), _idx(FASHION / f"{prefix}-labels-idx1-ubyte.gz")
        pick = rng.permutation(len(x))[:n]
        out[f"x{part}"], out[f"y{part}"] = x[pick].reshape(n, -1).astype(np.float32), y[pick].astype(np.int64)
    return out


def made(**kw) -> dict:
    x, y = sklearn.datasets.make_classification(random_state=0, **kw)
    return {"x": x.astype(np.float32), "y": y}


def bundled(name: str) -> dict:
    x, y = getattr(sklearn.datasets, f"load_{name}")(return_X_y=True)
    return {"x": x.astype(np.float32), "y": y}


def scaled(arrays: dict, seed=0) -> dict:
    """The same set with each feature in its own units: scaled by 10^U(-1, 3.6) and shifted (values up to ~4,000s)."""
    rng = np.random.default_rng(seed)
    d = arrays["x"].shape[1]
    return {"x": arrays["x"] * 10 ** rng.uniform(-1, 3.6, d) + rng.uniform(0, 1000, d), "y": arrays["y"]}


SETS = {  # name -> (what it is, builder)
    "mc_a": (
        "make_classification: 50 features (8 informative, 12 redundant), 6 classes x 2 clusters, sep 1.0",
        lambda: made(
            n_samples=3000,
            n_features=50,
            n_informative=8,
            n_redundant=12,
            n_classes=6,
            n_clusters_per_class=2,
            class_sep=1.0,
        ),
    ),
    "mc_b": (
        "make_classification: 100 features (10 informative, 30 redundant), 4 classes x 3 clusters, sep 1.5",
        lambda: made(
            n_samples=3000,
            n_features=100,
            n_informative=10,
            n_redundant=30,
            n_classes=4,
            n_clusters_per_class=3,
            class_sep=1.5,
        ),
    ),
    "mc_c": (
        "make_classification: 20 features (10 informative, 5 redundant), 3 classes x 2 clusters, sep 0.8",
        lambda: made(
            n_samples=2000,
            n_features=20,
            n_informative=10,
            n_redundant=5,
            n_classes=3,
            n_clusters_per_class=2,
            class_sep=0.8,
        ),
    ),
    "mc_d": (
        "make_classification: 200 features (20 informative, 20 redundant), 10 classes, sep 1.5",
        lambda: made(
            n_samples=4000,
            n_features=200,
            n_informative=20,
            n_redundant=20,
            n_classes=10,
            n_clusters_per_class=1,
            class_sep=1.5,
        ),
    ),
    "mc_noise": (
        "make_classification: 40 features (8 informative, no redundant, 32 noise), 4 classes x 2 clusters",
        lambda: made(
            n_samples=3000,
            n_features=40,
            n_informative=8,
            n_redundant=0,
            n_classes=4,
            n_clusters_per_class=2,
            class_sep=1.5,
        ),
    ),
    "mc_a_raw": (
        "mc_a with every feature in its own units (scaled 0.1x..4000x and shifted)",
        lambda: scaled(SETS["mc_a"][1]()),
    ),
    "fashion": ("Fashion-MNIST pixels as 784-d vectors (0..255), 4,000 train / 1,000 test", fashion_vectors),
    "digits": (
        "scikit-learn digits as 64-d vectors (0..16); random backbone near the ceiling",
        lambda: bundled("digits"),
    ),
    "breast_cancer": (
        "scikit-learn breast cancer, 30 features, 2 classes; near the ceiling",
        lambda: bundled("breast_cancer"),
    ),
    "wine": ("scikit-learn wine, 13 features, 3 classes, 178 samples; near the ceiling", lambda: bundled("wine")),
}
GOAL_SETS = ("mc_a", "mc_b", "mc_c", "mc_d", "mc_a_raw", "fashion")


def references(path: Path, test_fraction: float = 0.2) -> dict:
    """Two yardsticks on the same split and standardised features, no contrastive training:

    ``input_knn``: the evaluation's kNN (k=20, t=0.1) on the features themselves, no network;
    ``supervised_mlp``: a supervised MLP (one hidden layer of 256, scikit-learn), roughly what the
    features allow, to tell a set where a random backbone is already at the ceiling.
    """
    train, test = (load_dataset("npz", root=path, split=s, test_fraction=test_fraction) for s in ("train", "test"))
    x, xt = train.x.double().numpy(), test.x.double().numpy()
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1
    x, xt = (x - mean) / std, (xt - mean) / std
    knn = knn_accuracy(torch.tensor(x).float(), train.y, torch.tensor(xt).float(), test.y, 20, 0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at max_iter
        clf = MLPClassifier((256,), max_iter=300, random_state=0).fit(x, train.y.numpy())
    return {"input_knn": knn, "supervised_mlp": float(clf.score(xt, test.y.numpy()))}


def run_one(path: Path, seed: int, runs: Path, extra: list[str]) -> dict:
    name = f"{path.stem}-s{seed}"
    argv = [
        sys.executable,
        "-m",
        "deepfusion",
        "train",
        "data.name=npz",
        f"data.root={path}",
        f"train.seed={seed}",
        "train.threads=1",
        f"train.name={name}",
        "--no-progress",
        "--out",
        str(runs),
        *extra,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    ev = EvalResult.load(RunFolder(runs / name).eval)
    return dict(
        knn=ev.knn,
        random_knn=ev.random_knn,
        linear=ev.linear,
        random_linear=ev.random_linear,
        n_train=ev.n_train,
        n_test=ev.n_test,
        steps=ev.train_steps,
        wall=wall,
    )


def _pm(values) -> str:
    mean = statistics.mean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the .npz files, run folders and results.json")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, from {', '.join(SETS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("extra", nargs="*", help="overrides added to every run (after --)")
    args = parser.parse_args()
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    rows, results = [], {}
    for name in args.sets.split(","):
        path = out / "data" / f"{name}.npz"
        if not path.exists():
            np.savez(path, **SETS[name][1]())
        runs = [run_one(path, s, out / "runs", args.extra) for s in args.seeds]
        gains = [r["knn"] - r["random_knn"] for r in runs]
        lin = [r["linear"] - r["random_linear"] for r in runs]
        r0 = runs[0]
        ref = references(path)
        results[name] = dict(runs=runs, **ref)
        rows.append(
            f"| {name} | {r0['n_train']}/{r0['n_test']} | {100 * ref['supervised_mlp']:.1f} | "
            f"{100 * ref['input_knn']:.1f} | {_pm([r['random_knn'] for r in runs])} | "
            f"{_pm([r['knn'] for r in runs])} | {100 * statistics.mean(gains):+.1f} ({100 * min(gains):+.1f}) | "
            f"{100 * statistics.mean(lin):+.1f} | {r0['steps']} | "
            f"{statistics.mean(r['wall'] for r in runs):.0f} ({max(r['wall'] for r in runs):.0f}) |"
        )
        print(rows[-1], flush=True)
    (out / "results.json").write_text(
        json.dumps({"extra": args.extra, "seeds": args.seeds, "results": results}, indent=1)
    )
    print(
        "| set | train/test | supervised MLP % | input kNN % | random kNN % | trained kNN % | "
        "kNN gain, mean (min) | linear gain | steps | wall s, mean (max) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
