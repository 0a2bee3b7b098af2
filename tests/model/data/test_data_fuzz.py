"""Fuzzing the loaders with malformed files: only DeepFusionError subclasses may come out."""

from __future__ import annotations

import gzip
import pickle
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from deepfusion.errors import DeepFusionError
from deepfusion.model.data import load_dataset
from tests.model.data.data_files import idx_bytes, write_cifar10, write_fashion

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _loads_or_refuses(name: str, **kwargs) -> None:
    """Loading either succeeds or raises a DeepFusionError; anything else fails the test."""
    try:
        load_dataset(name, **kwargs)
    except DeepFusionError:
        pass


@FUZZ
@given(blob=st.binary(max_size=200), gz=st.booleans(), which=st.sampled_from(["images", "labels"]))
def test_random_bytes_as_idx(blob, gz, which):
    with tempfile.TemporaryDirectory() as tmp:
        write_fashion(Path(tmp), n_train=3, n_test=3, gz=gz)
        stem = f"train-{which}-idx{3 if which == 'images' else 1}-ubyte" + (".gz" if gz else "")
        (Path(tmp) / stem).write_bytes(gzip.compress(blob) if gz and blob[:1] == b"\x00" else blob)
        _loads_or_refuses("fashion_mnist", root=tmp)


@FUZZ
@given(
    dims=st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=3),
    extra=st.integers(-20, 20),
    labels=st.binary(max_size=8),
)
def test_idx_headers_with_wrong_sizes(dims, extra, labels):
    with tempfile.TemporaryDirectory() as tmp:
        write_fashion(Path(tmp), n_train=3, n_test=3)
        header = idx_bytes(np.zeros((1, 1, 1)))[:4] + np.array(dims, dtype=">u4").tobytes()
        body = bytes(max(0, min(4096, int(np.prod(dims, dtype=object)) + extra)))
        (Path(tmp) / "train-images-idx3-ubyte").write_bytes(header + body)
        (Path(tmp) / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.frombuffer(labels, np.uint8)))
        _loads_or_refuses("fashion_mnist", root=tmp)


@FUZZ
@given(data=st.data())
def test_truncated_and_flipped_cifar_pickles(data):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifar-10-batches-py"
        write_cifar10(folder, per_batch=2)
        target = folder / data.draw(st.sampled_from(["test_batch", "batches.meta"]))
        blob = bytearray(target.read_bytes())
        cut = data.draw(st.integers(0, len(blob)))
        blob = blob[:cut]
        if blob and data.draw(st.booleans()):
            pos = data.draw(st.integers(0, len(blob) - 1))
            blob[pos] = data.draw(st.integers(0, 255))
        target.write_bytes(bytes(blob))
        _loads_or_refuses("cifar10", root=folder, split="test")


@FUZZ
@given(
    value=st.one_of(
        st.none(),
        st.integers(),
        st.text(max_size=5),
        st.lists(st.integers(-5, 300), max_size=4),
        st.dictionaries(st.binary(max_size=6), st.integers(), max_size=3),
    ),
    key=st.sampled_from([b"data", b"labels", b"label_names"]),
)
def test_cifar_batches_with_wrong_contents(value, key):
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "cifar-10-batches-py"
        write_cifar10(folder, per_batch=2)
        name = "batches.meta" if key == b"label_names" else "test_batch"
        blob = pickle.loads((folder / name).read_bytes())
        blob[key] = value
        (folder / name).write_bytes(pickle.dumps(blob, protocol=2))
        _loads_or_refuses("cifar10", root=folder, split="test")


_dtypes = st.one_of(
    hnp.integer_dtypes(),
    hnp.unsigned_integer_dtypes(),
    hnp.floating_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
    st.just(np.dtype("U3")),
)


@FUZZ
@given(
    x=hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=5, max_side=4)),
    y=hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=2, max_side=5)),
    layout=st.sampled_from(["auto", "nchw", "nhwc"]),
    with_test=st.booleans(),
    split=st.sampled_from(["train", "test"]),
)
def test_npz_with_wrong_shapes_dtypes_and_labels(x, y, layout, with_test, split):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        arrays = dict(x=x, y=y, x_test=x[:2], y_test=y[:2]) if with_test and x.ndim and y.ndim else dict(x=x, y=y)
        np.savez(path, **arrays)
        _loads_or_refuses("npz", root=path, layout=layout, split=split)


@FUZZ
@given(labels=st.lists(st.integers(-3, 12), min_size=1, max_size=12), n=st.integers(1, 12))
def test_npz_bad_labels(labels, n):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "d.npz"
        np.savez(path, x=np.zeros((n, 3), np.float32), y=np.array(labels))
        _loads_or_refuses("npz", root=path, num_classes=10)
