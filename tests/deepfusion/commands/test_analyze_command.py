"""``deepfusion analyze`` on tiny trained runs and on attention files: the per-layer table with nulls
and the v3 verdict over seeds, the calibration, and one-line errors for bad input that leave the run
folders untouched and write nothing."""

import json

import pytest

from deepfusion import cli
from deepfusion.experiments.record import RECORD_VERSION
from deepfusion.model.runs.devices import limit_threads

TINY = [
    "data.options={samples_per_class: 40}",
    "train.epochs=1",
    "train.batch_size=64",
    "model.depth=3",
    "eval.linear_epochs=2",
    "eval.head_batch=32",
    "train.device=cpu",
]
FAST = ["--batches", "2", "--per-class", "4"]


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.loop import train

    root = tmp_path_factory.mktemp("runs")
    dirs = []
    with limit_threads(1):
        for seed in (1, 2):
            dirs.append(
                train(
                    load_config("synthetic", TINY + [f"train.seed={seed}"]), run_dir=root / f"s{seed}", progress=False
                ).run_dir
            )
        train(load_config("synthetic", TINY + ["model.depth=2"]), run_dir=root / "other", progress=False)
    return root, dirs


def _rows(out: str) -> list[list[str]]:
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["layer", "share"])
    return [line.split() for line in lines[header + 2 : header + 5]]


def test_two_seeds_print_one_row_per_layer_nulls_and_the_verdict(tiny_runs, capsys, tmp_path):
    root, dirs = tiny_runs
    out_file = tmp_path / "pooled.json"
    code = cli.main(["analyze", "--run", str(root / "s*"), *FAST, "--out", str(out_file)])
    out = capsys.readouterr().out
    assert code == 0
    rows = _rows(out)
    assert [r[0] for r in rows] == ["0", "1", "2"]  # model.depth=3
    assert all(r[3].endswith("x") for r in rows)  # the ratio to chance
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1 and "exploratory (2 seeds; rule v3)" in verdict[0]
    assert "cannot decide" in verdict[0] and "train 4 more seed(s)" in verdict[0]
    assert "permutation q975" in out and "untrained" in out
    pooled = json.loads(out_file.read_text())
    assert pooled["train_seeds"] == [1, 2] and pooled["verdict"]["seeds"] == 2
    assert float(rows[0][1]) == pytest.approx(pooled["verdict"]["share"][0], abs=5e-5)
    for d in dirs:
        record = json.loads((d / "analysis.json").read_text())
        assert record["version"] == RECORD_VERSION and record["settings"]["batches"] == 2 and record["step"] > 0


def test_one_run_is_labelled_one_seed(tiny_runs, capsys):
    root, _ = tiny_runs
    assert cli.main(["analyze", "--run", str(root / "s1"), *FAST]) == 0
    assert "exploratory (1 seed; rule v3)" in capsys.readouterr().out


def _one_line_error(args, capsys):
    code = cli.main(["analyze", *args])
    err = capsys.readouterr().err.strip()
    assert code != 0 and len(err.splitlines()) == 1 and err.startswith("deepfusion analyze: error:"), err
    return err


def test_the_same_folder_twice_is_refused(tiny_runs, capsys):
    root, _ = tiny_runs
    assert "given twice" in _one_line_error(["--run", str(root / "s1"), "--run", str(root / "s1"), *FAST], capsys)


def test_folders_of_different_configs_name_the_keys(tiny_runs, capsys):
    root, _ = tiny_runs
    err = _one_line_error(["--run", str(root / "s1"), "--run", str(root / "other"), *FAST], capsys)
    assert "model.depth" in err and "train.seed" in err


def test_a_split_too_small_says_what_fits(tiny_runs, capsys):
    root, _ = tiny_runs
    err = _one_line_error(["--run", str(root / "s1"), "--batches", "5", "--per-class", "30"], capsys)
    assert "the largest that fit" in err and "--per-class" in err


def test_other_settings_do_not_overwrite_an_analysis_without_force(tiny_runs, capsys):
    root, _ = tiny_runs
    assert cli.main(["analyze", "--run", str(root / "s2"), *FAST]) == 0
    before = (root / "s2" / "analysis.json").read_text()
    capsys.readouterr()
    err = _one_line_error(["--run", str(root / "s2"), "--batches", "2", "--per-class", "3"], capsys)
    assert "--force" in err
    assert (root / "s2" / "analysis.json").read_text() == before


@pytest.mark.parametrize("make_bad", ["missing", "empty", "not_a_run", "glob"])
def test_bad_run_folder_gives_one_line_error(tmp_path, capsys, make_bad):
    bad = tmp_path / "run"
    if make_bad == "empty":
        bad.mkdir()
    elif make_bad == "not_a_run":
        bad.mkdir()
        (bad / "config.yaml").write_text("model: {head: transformer}\n")  # never trained: no checkpoint
    target = str(tmp_path / "nothing*") if make_bad == "glob" else str(bad)
    _one_line_error(["--run", target], capsys)


def test_bad_counts_are_rejected(tiny_runs, capsys):
    root, _ = tiny_runs
    assert "--batches" in _one_line_error(["--run", str(root / "s1"), "--batches", "0"], capsys)
    assert "200" in _one_line_error(["--run", str(root / "s1"), *FAST, "--n-perm", "50"], capsys)
    assert "--run" in _one_line_error([], capsys)


def test_calibration_prints_the_rates(capsys):
    assert cli.main(["analyze", "--calibrate", "--draws", "1", "--case", "planted_1", "--case", "none"]) == 0
    out = capsys.readouterr().out
    assert "planted_1" in out and "none" in out and "observed" in out and "140 tokens" in out
    assert "two_group" not in out
    assert "not a calibration case" in _one_line_error(["--calibrate", "--case", "nope"], capsys)


def test_negative_seeds_are_one_line_errors(tiny_runs, capsys):
    root, _ = tiny_runs
    assert "--seed=-1" in _one_line_error(["--run", str(root / "s1"), *FAST, "--seed", "-1"], capsys)
    assert "--seed=-5" in _one_line_error(["--calibrate", "--seed", "-5"], capsys)


def test_small_batches_warn_and_name_the_largest_that_fit(tiny_runs, capsys):
    root, _ = tiny_runs
    assert cli.main(["analyze", "--run", str(root / "s1"), "--batches", "2", "--per-class", "2", "--force"]) == 0
    err = capsys.readouterr().err
    assert "warning: analysis batches of" in err and "(2 per class) say little" in err
    assert "the largest that fit the split: --per-class" in err


def test_the_training_split_warns_and_is_labelled(tiny_runs, capsys):
    root, _ = tiny_runs
    assert cli.main(["analyze", "--run", str(root / "s1"), *FAST, "--split", "train", "--force"]) == 0
    out, err = capsys.readouterr()
    assert "training split: not evidence of generalising structure" in err
    assert "training split: not evidence of generalising structure" in out.splitlines()[-1]


def test_help_states_the_thresholds(capsys):
    from deepfusion.experiments import verdict as rule

    with pytest.raises(SystemExit):
        cli.main(["analyze", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{rule.LINE}x chance" in text and "6, 12 and 24 seeds" in text
    assert f"{rule.ALPHA_LOOK:.4f}" in text and f"alpha {rule.ALPHA}" in text and "--attention FILE" in text


# ----------------------------------------------------------------------------- --attention files


def write_seed(path, rng, gains, own=(0.0,) * 4, untrained=True, C=4, n=5, batches=3):
    """One seed's --attention file, written by hand: softmax attention with logit ``gains[l]`` on
    other samples of the token's class and ``own[l]`` on its own views."""
    import numpy as np

    L, N = len(gains), C * n
    A, Y, I, U = [], [], [], []
    for b in range(batches):
        ids = np.arange(N) + N * b
        inst = np.concatenate([ids, ids])
        y = (inst % N) // n
        same = (y[:, None] == y[None, :]) & (inst[:, None] != inst[None, :])
        own_m = inst[:, None] == inst[None, :]
        for gain_set, out in ((gains, A), ((0.0,) * L, U)):
            logits = (
                np.asarray(gain_set)[:, None, None, None] * same
                + np.asarray(own)[:, None, None, None] * own_m
                + 0.3 * rng.standard_normal((L, 2, 2 * N, 2 * N))
            )
            a = np.exp(logits - logits.max(-1, keepdims=True))
            out.append(a / a.sum(-1, keepdims=True))
        Y.append(y)
        I.append(inst)
    arrays = {"attention": np.array(A, dtype=np.float32), "labels": np.array(Y), "instance": np.array(I)}
    if untrained:
        arrays["untrained"] = np.array(U, dtype=np.float32)
    np.savez(path, **arrays)
    return path


def _files(tmp_path, name, gains, own=(0.0,) * 4, seeds=6):
    import numpy as np

    rng = np.random.default_rng(len(name))
    args = []
    for s in range(seeds):
        spread = 1 + 0.1 * rng.standard_normal()
        args += ["--attention", str(write_seed(tmp_path / f"{name}{s}.npz", rng, [g * spread for g in gains], own))]
    return args


@pytest.mark.parametrize(
    "name, gains, own, expected",
    [
        ("planted", (0.0, 0.4, 0.8, 1.2), (0.0,) * 4, "Deep Fusion observed (6 seeds, look 1 of 3"),
        ("null", (0.0,) * 4, (0.0,) * 4, "Deep Fusion not observed (6 seeds"),
        ("instance", (0.0,) * 4, (0.0, 2.0, 4.0, 6.0), "Deep Fusion not observed (6 seeds"),
    ],
)
def test_attention_files_written_by_hand_get_the_known_answer(tmp_path, capsys, name, gains, own, expected):
    out_file = tmp_path / "out.json"
    assert cli.main(["analyze", *_files(tmp_path, name, gains, own), "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1 and expected in verdict[0], out
    record = json.loads(out_file.read_text())
    assert record["verdict"]["version"] == 3 and record["verdict"]["seeds"] == 6
    assert [r[0] for r in _rows(out)] == ["0", "1", "2"]


def test_files_from_a_trained_run_give_the_record_of_analyze_run(tiny_runs, capsys, tmp_path):
    root, dirs = tiny_runs
    by_run, by_file = tmp_path / "run.json", tmp_path / "file.json"
    assert (
        cli.main(["analyze", "--run", str(dirs[0]), "--run", str(dirs[1]), *FAST, "--force", "--out", str(by_run)]) == 0
    )
    assert (
        cli.main(
            [
                "analyze",
                "--attention",
                str(dirs[0] / "attention.npz"),
                "--attention",
                str(dirs[1] / "attention.npz"),
                "--out",
                str(by_file),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert json.loads(by_file.read_text())["verdict"] == json.loads(by_run.read_text())["verdict"]


def _broken(tmp_path, kind):
    import numpy as np

    path = write_seed(tmp_path / "good.npz", np.random.default_rng(0), (0.0, 0.5), own=(0.0, 0.0))
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    if kind == "shapes":
        arrays["labels"] = arrays["labels"][:, :-2]
    elif kind == "rows":
        arrays["attention"] = arrays["attention"] * 0.5
    elif kind == "nan":
        arrays["attention"][0, 0, 0, 0, 0] = np.nan
    elif kind == "one_class":
        arrays["labels"] = np.zeros_like(arrays["labels"])
    elif kind == "one_sample":
        arrays["labels"][:, [0, 20]] = 9
    elif kind == "missing":
        del arrays["instance"]
    bad = tmp_path / f"{kind}.npz"
    if kind == "not_npz":
        bad.write_text("not an archive")
    else:
        np.savez(bad, **arrays)
    return bad


@pytest.mark.parametrize(
    "kind, words",
    [
        ("shapes", "labels has shape"),
        ("rows", "do not sum to 1"),
        ("nan", "NaN"),
        ("one_class", "at least 2"),
        ("one_sample", "has one sample"),
        ("missing", "missing array(s) instance"),
        ("not_npz", "not a readable .npz"),
        ("absent", "no such file"),
    ],
)
def test_bad_attention_files_are_one_line_errors_and_write_nothing(tmp_path, capsys, kind, words):
    bad = tmp_path / "absent.npz" if kind == "absent" else _broken(tmp_path, kind)
    out_file = tmp_path / "out" / "pooled.json"
    err = _one_line_error(["--attention", str(bad), "--out", str(out_file)], capsys)
    assert words in err
    assert not out_file.parent.exists()


def test_runs_and_attention_files_together_are_refused(tiny_runs, capsys, tmp_path):
    root, _ = tiny_runs
    assert "not both" in _one_line_error(["--run", str(root / "s1"), "--attention", str(tmp_path / "a.npz")], capsys)
