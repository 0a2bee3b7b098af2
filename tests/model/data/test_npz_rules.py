"""The .npz loader's rules, each on a tiny file written here: labels, shapes, empty and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.data import load_dataset
from deepfusion.model.data.npz import summarize


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _vectors(n=24, d=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d))


@pytest.mark.parametrize(
    "labels, values",
    [
        (np.arange(24) % 3 + 1, (1, 2, 3)),  # 1..K
        (np.array([3, 7, 42] * 8), (3, 7, 42)),  # gaps
        (np.array([0, 10**6] * 12), (0, 10**6)),  # a huge value: 2 classes, not 1,000,001
        (np.array([2.0, 5.0] * 12), (2, 5)),  # integer-valued floats
    ],
)
def test_non_contiguous_labels_are_remapped_in_sorted_order(tmp_path, labels, values):
    path = _npz(tmp_path / "v.npz", x=_vectors(), y=labels)
    train, test = (load_dataset("npz", root=path, split=s) for s in ("train", "test"))
    assert train.num_classes == len(values) and train.label_values == values
    assert train.class_names == tuple(str(v) for v in values)
    for ds in (train, test):
        original = np.array(values)[ds.y.numpy()]
        assert set(original) <= set(values) and ds.y.max() < len(values)
    assert summarize(path).label_values == values


def test_contiguous_labels_are_kept_and_not_reported(tmp_path):
    ds = load_dataset("npz", root=_npz(tmp_path / "v.npz", x=_vectors(), y=np.arange(24) % 4))
    assert ds.num_classes == 4 and ds.label_values == () and ds.class_names == ("0", "1", "2", "3")


def test_remapping_covers_both_splits(tmp_path):
    path = _npz(tmp_path / "v.npz", x=_vectors(8), y=[5, 9] * 4, x_test=_vectors(4), y_test=[5, 9, 11, 11])
    train, test = (load_dataset("npz", root=path, split=s) for s in ("train", "test"))
    assert train.label_values == test.label_values == (5, 9, 11) and train.num_classes == 3
    assert test.y.tolist() == [0, 1, 2, 2]


@pytest.mark.parametrize(
    "labels, words",
    [
        ([-1, 0, 1, 1] * 6, ["negative labels are refused", "unlabelled", "shift the labels"]),
        ([0.5, 1, 1, 0] * 6, ["must be integers", "0.5"]),
        (["a", "b", "a", "b"] * 6, ["must be integers", "map class names"]),
    ],
)
def test_negative_and_non_integer_labels_are_refused(tmp_path, labels, words):
    with pytest.raises(DataError) as err:
        load_dataset("npz", root=_npz(tmp_path / "bad.npz", x=_vectors(), y=np.array(labels)))
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    "arrays, words",
    [
        (dict(x=np.zeros((0, 3)), y=np.zeros(0, int)), ["x holds 0 samples"]),
        (
            dict(x=_vectors(4), y=[0, 1, 0, 1], x_test=np.zeros((0, 3)), y_test=np.zeros(0, int)),
            ["x_test holds 0 samples", "neither x_test nor y_test"],
        ),
    ],
)
def test_empty_files_are_one_line_errors(tmp_path, arrays, words):
    path = _npz(tmp_path / "empty.npz", **arrays)
    for call in (lambda: load_dataset("npz", root=path), lambda: summarize(path)):
        with pytest.raises(DataError) as err:
            call()
        assert "\n" not in str(err.value) and all(w in str(err.value) for w in words)


@pytest.mark.parametrize(
    "x",
    [
        np.random.default_rng(0).normal(size=(6, 1, 5)) * 3,  # (N, 1, d) floats
        np.full((6, 1, 5), 300),
    ],
)  # (N, 1, d) counts
def test_an_image_shaped_array_says_it_was_read_as_images(tmp_path, x):
    with pytest.raises(DataError) as err:
        load_dataset("npz", root=_npz(tmp_path / "n1d.npz", x=x, y=[0, 1] * 3))
    msg = str(err.value)
    assert "read as images because x is 3-D (6, 1, 5)" in msg and "x.reshape(len(x), -1)" in msg and "\n" not in msg


def test_num_classes_above_the_sample_count_is_refused(tmp_path):
    path = _npz(tmp_path / "n.npz", x=_vectors(6), y=[0, 1] * 3)
    with pytest.raises(DataError) as info:
        load_dataset("npz", root=path, num_classes=10**6)
    assert all(n in str(info.value) for n in ("num_classes=1000000", "6")), str(info.value)


@pytest.mark.parametrize(
    "arrays, words",
    [
        (dict(x=np.array([{}, {}], dtype=object), y=[0, 1]), ["array 'x' has dtype object", "astype"]),
        (dict(x=np.array([[0.0, np.nan], [1, 2]]), y=[0, 1]), ["NaN or inf"]),
        (dict(x=np.full((2, 2), 1e300), y=[0, 1]), ["NaN or inf", "float32"]),
        (dict(x=_vectors(4)), ["no array 'y'"]),
        (dict(x=_vectors(4), y=[0, 1, 0]), ["3 labels for 4 samples"]),
        (dict(x=_vectors(4), y=[0, 1, 0, 1], x_test=_vectors(2, 4), y_test=[0, 1]), ["must match"]),
    ],
)
def test_bad_files_keep_one_line_errors(tmp_path, arrays, words):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as err:
        load_dataset("npz", root=path)
    assert "\n" not in str(err.value) and all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    "shape, layout, kind, sample",
    [
        ((10, 7), "auto", "vector", (7,)),
        ((10, 9, 8), "auto", "image", (1, 9, 8)),
        ((10, 9, 8, 3), "auto", "image", (3, 9, 8)),
        ((10, 3, 9, 8), "auto", "image", (3, 9, 8)),
        ((10, 3, 3, 3), "nhwc", "image", (3, 3, 3)),
    ],
)
def test_summarize_reads_the_kind_and_shape_without_loading_x(tmp_path, shape, layout, kind, sample):
    path = _npz(tmp_path / "s.npz", x=np.zeros(shape, np.uint8), y=np.arange(10) % 2)
    s = summarize(path, layout=layout)
    assert (s.kind, s.x_shape, s.input_shape, s.has_test, s.num_classes) == (kind, shape, sample, False, 2)
    if kind == "image":
        assert load_dataset("npz", root=path, layout=layout).input_shape == sample


def test_summarize_errors_match_the_loader(tmp_path):
    with pytest.raises(DataError, match="not found"):
        summarize(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a readable .npz"):
        summarize(tmp_path / "junk.npz")
    with pytest.raises(DataError, match="no array 'y'"):
        summarize(_npz(tmp_path / "noy.npz", x=_vectors()))
    with pytest.raises(ConfigError, match="layout"):
        summarize(_npz(tmp_path / "ok.npz", x=_vectors(), y=np.arange(24) % 2), layout="hwc")


def test_an_object_array_is_named_with_its_conversion(tmp_path):
    path = tmp_path / "obj.npz"
    np.savez(path, x=_vectors(), y=np.array([str(v % 2) for v in range(24)], dtype=object), allow_pickle=True)
    with pytest.raises(DataError) as info:
        load_dataset("npz", root=str(path))
    assert all(n in str(info.value) for n in ("'y'", "object", "y.astype(np.int64)")), str(info.value)


def test_nan_rows_are_counted_and_the_fix_named(tmp_path):
    x = _vectors()
    x[[3, 7, 8]] = np.nan
    path = _npz(tmp_path / "nan.npz", x=x, y=np.arange(24) % 2)
    with pytest.raises(DataError) as info:
        load_dataset("npz", root=str(path))
    assert all(n in str(info.value) for n in ("3 of 24", "NaN", "row 3", "isfinite")), str(info.value)


def test_one_sample_per_class_says_so_not_lower_test_fraction(tmp_path):
    path = _npz(tmp_path / "one.npz", x=_vectors(n=3), y=np.arange(3))
    with pytest.raises(DataError) as info:
        load_dataset("npz", root=str(path), split="test")
    assert all(n in str(info.value) for n in ("3 classes", "x_test")), str(info.value)


def test_a_one_class_data_set_is_refused_before_training(tmp_path):
    from deepfusion.cli import main

    path = _npz(tmp_path / "oneclass.npz", x=_vectors(n=40), y=np.zeros(40, dtype=int))
    assert (
        main(
            [
                "train",
                "--no-progress",
                "data.name=npz",
                f"data.root={path}",
                "--out",
                str(tmp_path / "runs"),
                "train.threads=1",
            ]
        )
        == 2
    )
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_header_promising_gigabytes_is_refused_before_allocation(tmp_path):
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (2**32, 1)})
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("x.npy", header.getvalue() + b"\0" * 64)  # 16 GiB promised, 64 bytes held
        y = io.BytesIO()
        np.save(y, np.arange(4) % 2)
        zf.writestr("y.npy", y.getvalue())
    with pytest.raises(DataError) as info:
        load_dataset("npz", root=str(path))
    assert all(n in str(info.value) for n in ("(4294967296, 1)", "float32", "16.00 GiB", "64 bytes")), str(info.value)
