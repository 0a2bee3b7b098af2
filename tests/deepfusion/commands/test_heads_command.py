"""deepfusion heads: the paired table from run folders, the JSON record, one-line refusals."""

import json

import pytest

from deepfusion import cli
from deepfusion.experiments.studies.head_comparison import HeadComparison, compare_heads
from tests.experiments.studies.head_runs import accuracies, write_grid, write_run


def test_the_table_shows_every_head_and_the_paired_differences(tmp_path, capsys):
    runs = write_grid(tmp_path / "runs")
    (tmp_path / "runs" / "transformer_s1.log").write_text("a log beside the folders")  # skipped by the glob
    out = tmp_path / "rec.json"
    assert cli.main(["heads", "--run", str(tmp_path / "runs" / "*"), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "seeds 1,2,3" in printed and "exploratory" in printed
    means, differences, gains = [
        {line.split("  ")[0]: line for line in block.splitlines()[2:]} for block in printed.split("\n\n")[:3]
    ]
    assert "60.0" in means["Transformer (across batch)"]
    assert "+1.2 [+1.0, +1.4]" in differences["FFN blocks (paper baseline)"]  # 1.1, 1.2, 1.3: t_2 * 0.1 / sqrt 3
    assert "Transformer (across batch)" not in differences
    assert "-4.0 [-4.0, -4.0]" in gains["MLP, no BatchNorm"]  # the fixture's random backbone is 4 points above
    assert HeadComparison.from_json(json.loads(out.read_text())) == compare_heads(runs)


def test_six_seeds_are_not_called_exploratory(tmp_path, capsys):
    write_grid(tmp_path, seeds=range(1, 7), heads=("transformer", "mlp"))
    assert cli.main(["heads", "--run", str(tmp_path / "*")]) == 0
    assert "exploratory" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda root: [], "matches no folder"),
        (
            lambda root: (
                write_grid(root, seeds=(1, 2), heads=("transformer",)) + write_grid(root, seeds=(1,), heads=("mlp",))
            ),
            "head mlp has seeds 1 but transformer has 1,2",
        ),
        (
            lambda root: (
                write_grid(root, seeds=(1,), heads=("transformer",))
                + [write_run(root, "mlp", 1, accuracies("mlp", 1), "loss.temperature=0.5")]
            ),
            "differ in loss.temperature",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, make, words):
    make(tmp_path / "runs")
    out = tmp_path / "out" / "rec.json"
    assert cli.main(["heads", "--run", str(tmp_path / "runs" / "*"), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "out").exists()


def test_no_run_given_is_one_line(capsys):
    assert cli.main(["heads"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --run DIR" in err[0]


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        cli.main(["heads", "--help"])
    text = capsys.readouterr().out
    for words in ("--run", "--json", "paired", "t-interval", "head kNN", "random kNN"):
        assert words in text, words
