"""Config: presets, overrides, error messages, hashing, round trips, and a parser fuzz test."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfusion.errors import ConfigError, DeepFusionError
from deepfusion.model.runs.config import (
    config_from_dict,
    config_hash,
    config_to_dict,
    load_config,
    presets,
    save_config,
)


@pytest.mark.parametrize("name", presets())
def test_every_preset_loads_and_round_trips(name, tmp_path):
    cfg = load_config(name)
    assert cfg.preset == name
    assert config_from_dict(config_to_dict(cfg)) == cfg
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_expected_presets_exist():
    assert {"digits", "synthetic", "fashion_mnist", "cifar10", "cifar100", "tiny_imagenet"} <= set(presets())


@pytest.mark.parametrize("name, backbone", [("cifar10", "resnet18"), ("paper_cpu", "cnn3")])
def test_paper_presets_keep_the_papers_head(name, backbone):
    cfg = load_config(name)
    m = cfg.model
    assert (m.backbone, m.dim, m.depth, m.heads, m.ffn_dim, m.out_dim, m.norm) == (
        backbone,
        256,
        10,
        16,
        1024,
        512,
        "post",
    )
    assert (m.scope, m.out_bn) == ("both_views", True)
    assert (cfg.loss.temperature, cfg.train.batch_size) == (0.02, 1024)


def test_overrides_follow_yaml_scalar_rules():
    cfg = load_config(
        "digits",
        ["optim.lr=1e-3", "train.amp=false", "train.name=null", "data.options.n=7", "model.head=mlp", "train.epochs=3"],
    )
    assert cfg.optim.lr == 1e-3 and cfg.train.amp is False and cfg.train.name is None
    assert cfg.data.options == {"n": 7} and cfg.model.head == "mlp" and cfg.train.epochs == 3


def test_int_accepted_for_float():
    cfg = load_config("digits", ["loss.temperature=1"])
    assert isinstance(cfg.loss.temperature, float) and cfg.loss.temperature == 1.0


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"optim\.lrate.*valid keys.*\blr\b.*momentum"):
        load_config("digits", ["optim.lrate=0.1"])


def test_unknown_section_lists_sections():
    with pytest.raises(ConfigError, match="'trian'.*train"):
        load_config("digits", ["trian.epochs=1"])


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.epochs=ten", "train.epochs: expected int, got 'ten'"),
        ("train.epochs=2.5", "expected int"),
        ("train.amp=3", "train.amp: expected bool"),
        ("optim.lr=fast", "optim.lr: expected float"),
        ("data.options=[1]", "data.options: expected dict"),
    ],
)
def test_type_errors_name_key_type_and_value(override, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace(".", r"\.")):
        load_config("digits", [override])


@pytest.mark.parametrize(
    "override",
    [
        "model.head=lstm",
        "optim.name=rmsprop",
        "train.device=tpu",
        "loss.temperature=0",
        "train.batch_size=1",
        "model.heads=5",
        "eval.head_batch=1",
    ],
)
def test_invalid_values_rejected(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        load_config("digits", [override])


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: 3\n  name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml line \d+"):
        load_config(path)


def test_unknown_preset_lists_presets():
    with pytest.raises(ConfigError, match="digits"):
        load_config("digitz")


def test_hash_is_stable_and_sensitive():
    a, b = load_config("digits"), load_config("digits")
    assert config_hash(a) == config_hash(b)
    assert config_hash(load_config("digits", ["train.out_dir=elsewhere", "train.name=x"])) == config_hash(a)
    for change in ["loss.temperature=0.3", "train.seed=1", "model.head=mlp", "data.options.n=5"]:
        assert config_hash(load_config("digits", [change])) != config_hash(a), change


def test_hash_independent_of_key_order():
    d = config_to_dict(load_config("digits"))
    reordered = {k: dict(reversed(list(v.items()))) if isinstance(v, dict) else v for k, v in reversed(list(d.items()))}
    assert config_hash(config_from_dict(reordered)) == config_hash(config_from_dict(d))


_keys = st.sampled_from(["data", "model", "optim", "loss", "train", "eval", "x", ""]).flatmap(
    lambda s: st.tuples(st.just(s), st.sampled_from(["name", "lr", "epochs", "options", "head", "amp", "zz", "a.b"]))
)
_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.lists(st.integers(), max_size=3)
)


@settings(deadline=None, max_examples=150)
@given(key=_keys, raw=st.one_of(st.text(max_size=30), _values.map(repr)))
def test_fuzz_overrides_raise_only_project_errors(key, raw):
    try:
        load_config("synthetic", [f"{key[0]}.{key[1]}={raw}"])
    except DeepFusionError:
        pass


@settings(deadline=None, max_examples=150)
@given(text=st.one_of(st.text(max_size=200), st.text(alphabet="tra:in{}[]-\n #&*!|>'\"", max_size=80)))
def test_fuzz_yaml_text_raises_only_project_errors(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        load_config(path)
    except DeepFusionError:
        pass


@settings(deadline=None, max_examples=150)
@given(
    data=st.dictionaries(
        st.sampled_from(["train", "model", "loss", "eval", "q"]),
        st.one_of(_values, st.dictionaries(st.sampled_from(["epochs", "lr", "head", "name", "k"]), _values)),
    )
)
def test_fuzz_dicts_raise_only_project_errors(data):
    try:
        config_from_dict(data)
    except DeepFusionError:
        pass
