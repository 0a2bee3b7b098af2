"""Input limits of the config: names that become paths, ranges, and YAML alias expansion."""

import time

import pytest

from deepfusion.errors import ConfigError
from deepfusion.model.runs.config import load_config
from deepfusion.model.runs.config_limits import YAML_BYTES, YAML_VALUES


@pytest.mark.parametrize("preset", ["../../../x", "/tmp/abs", "a/b", "..", ".", "", "a\0b", "x" * 201])
def test_preset_that_would_leave_the_output_folder_is_refused(preset, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"preset: {preset!r}\n".replace("\\x00", "\\0").replace("'", '"'))
    with pytest.raises(ConfigError, match="preset="):
        load_config(path)


@pytest.mark.parametrize("name", ['"a/b"', '".."', '"a\\0b"', '""'])
def test_train_name_follows_the_same_rules(name):
    with pytest.raises(ConfigError, match="train.name="):
        load_config("synthetic", [f"train.name={name}"])


def test_plain_names_pass(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("preset: my-run_1.b\ntrain: {name: run 2}\n")
    cfg = load_config(path)
    assert (cfg.preset, cfg.train.name) == ("my-run_1.b", "run 2")


@pytest.mark.parametrize("key", ["train.out_dir", "data.root"])
def test_nul_in_a_path_is_refused(key):
    with pytest.raises(ConfigError, match=f"{key}=.*NUL"):
        load_config("synthetic", [f'{key}="out\\0x"'])


@pytest.mark.parametrize(
    "override, words",
    [
        ("loss.temperature=1e-30", "loss.temperature=1e-30 must lie in [0.001, 100]"),
        ("loss.temperature=1e6", "loss.temperature"),
        ("eval.knn_t=1e-9", "eval.knn_t"),
        ("optim.warmup_epochs=1e308", "optim.warmup_epochs=1e+308 must lie in [0, 100000]"),
        ("train.seed=1000000000000000", "train.seed=1000000000000000 must lie in [0, 4294967295]"),
        ("data.seed=4294967296", "data.seed"),
        ("train.epochs=1000000000", "train.epochs"),
        ("model.dim=99999999999", "model.dim=99999999999 must be at most 2147483647"),
    ],
)
def test_values_out_of_range_are_refused(override, words):
    with pytest.raises(ConfigError) as info:
        load_config("synthetic", [override])
    assert words in str(info.value)


def test_range_ends_are_accepted():
    cfg = load_config("synthetic", ["train.seed=4294967295", "loss.temperature=0.001", "optim.warmup_epochs=0"])
    assert cfg.train.seed == 2**32 - 1


def _bomb(levels: int) -> str:
    lines = ["data:", "  options:", "    l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_bomb(9))  # 10**9 values once expanded
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=str(YAML_VALUES)):
        load_config(path)
    assert time.perf_counter() - start < 5


def test_yaml_alias_bomb_in_an_override_is_refused():
    with pytest.raises(ConfigError, match=str(YAML_VALUES)):
        load_config(
            "synthetic",
            ["data.options=" + _bomb(7).split("options:")[1].replace("\n    ", ", ").strip(", \n").join("{}")],
        )


def test_a_few_aliases_are_fine(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(_bomb(3))  # 1000 values
    assert len(load_config(path).data.options["l2"]) == 10


def test_a_huge_yaml_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    import yaml

    path = tmp_path / "big.yaml"
    path.write_text("data:\n  options:\n    x: [" + ",".join(["1"] * 600_000) + "]\n")  # 1.2 MB

    def no_parsing(*a, **k):
        raise AssertionError("parsed before the size was checked")

    monkeypatch.setattr(yaml, "load", no_parsing)
    with pytest.raises(ConfigError, match=f"{YAML_BYTES} at most"):
        load_config(path)
    from deepfusion.model.runs.config import parse_override

    with pytest.raises(ConfigError, match=f"{YAML_BYTES} at most"):
        parse_override("data.options={x: [" + ",".join(["1"] * 600_000) + "]}")


def test_a_section_given_twice_is_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  epochs: 2\nmodel:\n  depth: 1\ntrain:\n  seed: 3\n")
    with pytest.raises(ConfigError, match="line 5.*'train'"):
        load_config(path)
    path.write_text("train:\n  epochs: 2\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="'epochs'"):
        load_config(path)
