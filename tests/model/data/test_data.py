"""Dataset loaders: each reads a tiny file written here in its format; errors name the problem."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from deepfusion.errors import ConfigError, DataError
from deepfusion.model.data import DATASETS, dataset_options, load_dataset
from deepfusion.model.data import tiny_imagenet as tiny_module
from deepfusion.model.data.base import ArrayDataset, stratified_split
from deepfusion.model.data.fashion_mnist import DEFAULT_ROOT
from tests.model.data.data_files import write_cifar10, write_cifar100, write_fashion, write_idx, write_tiny_imagenet

# -- registry and options ---------------------------------------------------------------------


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ConfigError) as err:
        load_dataset("imagenet")
    assert all(name in str(err.value) for name in DATASETS)


def test_unknown_option_lists_the_loaders_options():
    with pytest.raises(ConfigError) as err:
        load_dataset("synthetic", dimension=3)
    assert "dimension" in str(err.value)
    assert all(k in str(err.value) for k in ("num_classes", "dim", "samples_per_class", "noise", "test_fraction"))


def test_the_torch_free_name_list_is_the_loaders():
    from deepfusion.model.data import _LOADERS

    assert DATASETS == tuple(_LOADERS)


def test_every_loader_accepts_the_common_options():
    for name in DATASETS:
        assert {"test_fraction", "limit"} <= set(dataset_options(name))


@pytest.mark.parametrize(
    "bad",
    [
        dict(split="val"),
        dict(test_fraction=1.0),
        dict(test_fraction=0),
        dict(limit=0),
        dict(dim=0),
        dict(noise=-1.0),
        dict(seed=-1),
    ],
)
def test_bad_option_values_raise_config_error(bad):
    with pytest.raises(ConfigError):
        load_dataset("synthetic", **bad)


def test_limit_keeps_a_stratified_subset():
    ds = load_dataset("synthetic", limit=100, num_classes=4, samples_per_class=100)
    assert len(ds) == 100 and torch.bincount(ds.y).tolist() == [25] * 4


# -- ArrayDataset ---------------------------------------------------------------------------


def _images(n=6, classes=3):
    return ArrayDataset(
        torch.zeros(n, 1, 4, 4, dtype=torch.uint8), torch.arange(n) % classes, classes, "image", (1, 4, 4), (), "tiny"
    )


def test_array_dataset_rejects_labels_out_of_range():
    with pytest.raises(DataError, match=r"\[0, 3\].*\[0, 3\)"):
        ArrayDataset(torch.zeros(4, 2), torch.tensor([0, 1, 2, 3]), 3, "vector", (2,))


@pytest.mark.parametrize(
    "x, y, msg",
    [
        (torch.zeros(4, 2), torch.zeros(3, dtype=torch.long), "4 samples.*3 labels"),
        (torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, dtype=torch.long), "float32"),
        (torch.zeros(4, 2), torch.zeros(4, dtype=torch.int32), "int64"),
    ],
)
def test_array_dataset_names_the_problem(x, y, msg):
    with pytest.raises(DataError, match=msg):
        ArrayDataset(x, y, 2, "vector", (2,))


def test_array_dataset_rejects_float_images():
    with pytest.raises(DataError, match="uint8"):
        ArrayDataset(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long), 1, "image", (1, 4, 4))


def test_subset_and_to_keep_metadata():
    ds = _images()
    sub = ds.subset([1, 4])
    assert sub.y.tolist() == [1, 1] and sub.num_classes == 3 and sub.class_names == ("0", "1", "2")
    moved = ds.to("cpu")
    assert moved.x.device.type == "cpu" and torch.equal(moved.y, ds.y)


def test_class_balanced_indices_are_balanced_grouped_and_seeded():
    ds = load_dataset("synthetic", num_classes=4, samples_per_class=20)
    idx = ds.class_balanced_indices(5, seed=3)
    assert ds.y[idx].tolist() == sorted([0, 1, 2, 3] * 5)
    assert len(set(idx.tolist())) == 20
    assert torch.equal(idx, ds.class_balanced_indices(5, seed=3))
    assert not torch.equal(idx, ds.class_balanced_indices(5, seed=4))
    g = torch.Generator().manual_seed(3)
    assert torch.equal(idx, ds.class_balanced_indices(5, generator=g))
    with pytest.raises(DataError, match="per_class=100"):
        ds.class_balanced_indices(100)


# -- stratified split -------------------------------------------------------------------------


def test_stratified_split_is_disjoint_complete_stratified_and_seeded():
    y = np.repeat(np.arange(5), [40, 20, 8, 2, 1])
    train, test = stratified_split(y, 0.25, seed=7)
    assert not set(train) & set(test) and sorted([*train, *test]) == list(range(len(y)))
    assert np.bincount(y[test], minlength=5).tolist() == [10, 5, 2, 1, 0]  # single-sample class stays in train
    again = stratified_split(y, 0.25, seed=7)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert not np.array_equal(test, stratified_split(y, 0.25, seed=8)[1])


@pytest.mark.parametrize(
    "name, opts", [("synthetic", {}), ("synthetic_images", {}), ("digits", {}), ("digits", {"as_vectors": True})]
)
def test_generated_and_bundled_splits_do_not_overlap(name, opts):
    train = load_dataset(name, split="train", seed=5, test_fraction=0.2, **opts)
    test = load_dataset(name, split="test", seed=5, test_fraction=0.2, **opts)
    rows = lambda ds: {bytes(r.numpy().tobytes()) for r in ds.x.reshape(len(ds), -1)}  # noqa: E731
    assert len(rows(train) & rows(test)) <= (2 if name == "digits" else 0)  # digits holds a few duplicate images
    assert abs(len(test) / (len(train) + len(test)) - 0.2) < 0.01
    again = load_dataset(name, split="test", seed=5, test_fraction=0.2, **opts)
    assert torch.equal(test.x, again.x) and torch.equal(test.y, again.y)


# -- synthetic and digits ---------------------------------------------------------------------


def test_synthetic_vectors_have_unit_means_and_the_asked_noise():
    ds = load_dataset("synthetic", num_classes=3, dim=64, samples_per_class=400, noise=0.3, test_fraction=0.1)
    means = torch.stack([ds.x[ds.y == c].mean(0) for c in range(3)])
    assert torch.allclose(means.norm(dim=1), torch.ones(3), atol=0.05)
    spread = (ds.x - means[ds.y]).norm(dim=1).pow(2).mean().sqrt()
    assert abs(float(spread) - 0.3) < 0.02
    assert ds.kind == "vector" and ds.input_shape == (64,) and ds.x.dtype == torch.float32


@pytest.mark.parametrize("name", ["synthetic", "synthetic_images"])
def test_synthetic_data_is_learnable_by_a_linear_model(name):
    from sklearn.linear_model import LogisticRegression

    train, test = (load_dataset(name, split=s, seed=1) for s in ("train", "test"))
    flat = lambda ds: ds.x.reshape(len(ds), -1).float().numpy() / (255.0 if ds.kind == "image" else 1.0)  # noqa: E731
    clf = LogisticRegression(max_iter=300).fit(flat(train), train.y.numpy())
    assert clf.score(flat(test), test.y.numpy()) > 0.9


def test_synthetic_images_are_uint8_colour_patterns():
    ds = load_dataset("synthetic_images", size=12, num_classes=4, samples_per_class=10)
    assert ds.x.dtype == torch.uint8 and ds.input_shape == (3, 12, 12) and ds.num_classes == 4


def test_digits_images_and_vectors():
    img = load_dataset("digits", test_fraction=0.2)
    vec = load_dataset("digits", test_fraction=0.2, as_vectors=True)
    assert img.kind == "image" and img.input_shape == (1, 8, 8) and int(img.x.max()) == 255
    assert vec.kind == "vector" and vec.input_shape == (64,) and float(vec.x.max()) == 1.0
    assert torch.equal(img.y, vec.y)
    assert torch.allclose(img.x.reshape(len(img), 64).float() / 255, vec.x, atol=1 / 255)


# -- Fashion-MNIST (IDX) ----------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_fashion_mnist_reads_idx_files(tmp_path, gz):
    truth = write_fashion(tmp_path, gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("fashion_mnist", root=tmp_path, split=split)
        assert ds.input_shape == (1, 28, 28) and ds.class_names[9] == "Ankle boot"
        assert np.array_equal(ds.x[:, 0].numpy(), truth[prefix][0]) and np.array_equal(ds.y.numpy(), truth[prefix][1])


def test_fashion_mnist_finds_files_in_a_subfolder(tmp_path):
    write_fashion(tmp_path / "fashion-mnist")
    assert len(load_dataset("fashion_mnist", root=tmp_path, split="test")) == 6


def test_fashion_mnist_missing_files_are_named(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("fashion_mnist", root=tmp_path)
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg and str(tmp_path) in msg


@pytest.mark.parametrize(
    "corrupt, msg",
    [
        (lambda b: b"\x00\x00\x08\x02" + b[4:], "magic number"),
        (lambda b: b"\x00\x00\x0d\x03" + b[4:], "magic number"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b[:6], "too short"),
    ],
)
def test_fashion_mnist_malformed_images_name_the_file(tmp_path, corrupt, msg):
    write_fashion(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(DataError, match=msg) as err:
        load_dataset("fashion_mnist", root=tmp_path)
    assert str(path) in str(err.value)


def test_fashion_mnist_bad_gzip_and_mismatched_lengths(tmp_path):
    write_fashion(tmp_path, gz=True)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="gzip"):
        load_dataset("fashion_mnist", root=tmp_path, split="test")
    write_idx(tmp_path, "train", np.zeros((5, 28, 28)), np.zeros(4))
    with pytest.raises(DataError, match="5 images.*4 labels"):
        load_dataset("fashion_mnist", root=tmp_path)


def test_fashion_mnist_label_out_of_range(tmp_path):
    write_idx(tmp_path, "train", np.zeros((3, 28, 28)), np.array([0, 10, 2]))
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        load_dataset("fashion_mnist", root=tmp_path)


@pytest.mark.skipif(not os.path.isdir(DEFAULT_ROOT), reason="Fashion-MNIST files are not installed")
def test_real_fashion_mnist_test_split():
    ds = load_dataset("fashion_mnist", split="test")
    assert ds.x.shape == (10000, 1, 28, 28) and torch.bincount(ds.y).tolist() == [1000] * 10


# -- CIFAR ------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_parent", [False, True])
def test_cifar10_reads_pickles_from_folder_or_parent(tmp_path, use_parent):
    truth = write_cifar10(tmp_path / "cifar-10-batches-py")
    root = tmp_path if use_parent else tmp_path / "cifar-10-batches-py"
    for split in ("train", "test"):
        ds = load_dataset("cifar10", root=root, split=split)
        assert np.array_equal(ds.x.numpy(), truth[split][0]) and np.array_equal(ds.y.numpy(), truth[split][1])
    assert len(ds) == 4 and ds.class_names[3] == "c3" and ds.input_shape == (3, 32, 32)


def test_cifar100_reads_fine_labels(tmp_path):
    truth = write_cifar100(tmp_path / "cifar-100-python")
    ds = load_dataset("cifar100", root=tmp_path, split="test")
    assert ds.num_classes == 100 and np.array_equal(ds.y.numpy(), truth["test"][1]) and ds.class_names[7] == "f7"


def test_cifar_missing_files_are_named(tmp_path):
    with pytest.raises(DataError, match="data_batch_1..5.*test_batch.*batches.meta") as err:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(err.value)
    with pytest.raises(DataError, match="train, test, meta"):
        load_dataset("cifar100", root=tmp_path)


def test_cifar_truncated_and_foreign_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    good = (folder / "test_batch").read_bytes()
    (folder / "test_batch").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="test_batch"):
        load_dataset("cifar10", root=folder, split="test")
    (folder / "test_batch").write_bytes(pickle.dumps(os.system))  # a global that could run code
    with pytest.raises(DataError, match="refusing"):
        load_dataset("cifar10", root=folder, split="test")


@pytest.mark.parametrize(
    "blob, msg",
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "shape"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "1 labels for 2 samples"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}, r"\[0, 10\)"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "no 'labels'"),
        ([1, 2], "dict"),
    ],
)
def test_cifar_malformed_batches(tmp_path, blob, msg):
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    (folder / "test_batch").write_bytes(pickle.dumps(blob, protocol=2))
    with pytest.raises(DataError, match=msg):
        load_dataset("cifar10", root=folder, split="test")


# -- Tiny-ImageNet ----------------------------------------------------------------------------


def test_tiny_imagenet_decodes_and_caches(tmp_path, monkeypatch):
    folder = tmp_path / "tiny-imagenet-200"
    write_tiny_imagenet(folder)
    train = load_dataset("tiny_imagenet", root=tmp_path)
    assert train.x.shape == (6, 3, 64, 64) and train.x.dtype == torch.uint8
    assert train.class_names == ("thing n01", "thing n02")  # sorted wnids
    grey = train.x.float().mean(dim=(1, 2, 3))
    assert torch.allclose(grey, 40 + 80 * train.y.float(), atol=3)  # greyscale and 48 px images handled
    test = load_dataset("tiny_imagenet", root=folder, split="test")
    assert len(test) == 4 and torch.bincount(test.y).tolist() == [2, 2]
    assert len(list((folder / ".deepfusion-cache").glob("train-*.npz"))) == 1

    def no_decode(path):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(tiny_module, "_decode", no_decode)
    again = load_dataset("tiny_imagenet", root=folder)
    assert torch.equal(again.x, train.x) and torch.equal(again.y, train.y)


def test_tiny_imagenet_cache_dir_and_no_cache(tmp_path):
    folder = tmp_path / "tiny-imagenet-200"
    write_tiny_imagenet(folder)
    load_dataset("tiny_imagenet", root=folder, split="test", cache_dir=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("test-*.npz"))) == 1
    load_dataset("tiny_imagenet", root=folder, split="test", cache=False)
    assert not (folder / ".deepfusion-cache").exists()


def test_tiny_imagenet_errors(tmp_path):
    with pytest.raises(DataError, match="wnids.txt.*val_annotations.txt"):
        load_dataset("tiny_imagenet", root=tmp_path)
    folder = tmp_path / "tiny-imagenet-200"
    write_tiny_imagenet(folder)
    (folder / "val" / "images" / "val_n01_0.JPEG").write_bytes(b"garbage")
    with pytest.raises(DataError, match="val_n01_0.JPEG"):
        load_dataset("tiny_imagenet", root=folder, split="test", cache=False)
    (folder / "val" / "val_annotations.txt").write_text("val_n01_0.JPEG\tn77\t0\t0\t1\t1\n")
    with pytest.raises(DataError, match="wnids.txt"):
        load_dataset("tiny_imagenet", root=folder, split="test", cache=False)


# -- npz --------------------------------------------------------------------------------------


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_vectors_with_seeded_split(tmp_path):
    x = np.random.default_rng(0).normal(size=(40, 5))
    path = _npz(tmp_path / "v.npz", x=x, y=np.arange(40) % 4)
    train, test = (load_dataset("npz", root=path, split=s, seed=2, test_fraction=0.2) for s in ("train", "test"))
    assert train.kind == "vector" and len(train) == 32 and len(test) == 8 and train.name == "v"
    assert np.allclose(np.sort(np.concatenate([train.x[:, 0], test.x[:, 0]])), np.sort(x[:, 0]).astype(np.float32))


@pytest.mark.parametrize(
    "shape, layout, expect",
    [
        ((6, 8, 9), "auto", (1, 8, 9)),
        ((6, 3, 8, 9), "auto", (3, 8, 9)),
        ((6, 8, 9, 3), "auto", (3, 8, 9)),
        ((6, 3, 3, 3), "nhwc", (3, 3, 3)),
    ],
)
def test_npz_image_layouts(tmp_path, shape, layout, expect):
    x = np.arange(np.prod(shape)).reshape(shape) % 256
    path = _npz(
        tmp_path / "i.npz",
        x=x.astype(np.uint8),
        y=np.zeros(6, int),
        x_test=x[:2].astype(np.uint8),
        y_test=np.zeros(2, int),
    )
    ds = load_dataset("npz", root=path, layout=layout)
    assert ds.kind == "image" and ds.input_shape == expect and len(ds) == 6
    assert len(load_dataset("npz", root=path, split="test", layout=layout)) == 2
    if shape[-1] == 3 and layout != "nchw":
        assert np.array_equal(ds.x.numpy(), x.transpose(0, 3, 1, 2))


def test_npz_float_images_are_scaled(tmp_path):
    path = _npz(tmp_path / "f.npz", x=np.full((4, 2, 2), 0.5), y=[0, 1, 0, 1])
    assert int(load_dataset("npz", root=path).x.max()) == 128


@pytest.mark.parametrize(
    "arrays, msg",
    [
        (dict(x=np.zeros((4, 2))), "no array 'y'"),
        (dict(x=np.zeros((4, 2)), y=[0, 1, 2]), "3 labels for 4 samples"),
        (dict(x=np.zeros((4, 2)), y=[0, 1, -1, 0]), "labels"),
        (dict(x=np.zeros((4, 2)), y=[0.5, 1, 1, 0]), "integers"),
        (dict(x=np.full((4, 2, 2), 2.0), y=[0, 1, 1, 0]), r"\[0, 1\]"),
        (dict(x=np.full((4, 2, 2), 300), y=[0, 1, 1, 0]), "0..255"),
        (dict(x=np.zeros(4), y=[0, 1, 1, 0]), "shape"),
        (dict(x=np.zeros((4, 9, 8, 7)), y=[0, 1, 1, 0]), "layout"),
        (dict(x=np.zeros((4, 2)), y=[0, 1, 1, 0], x_test=np.zeros((2, 3)), y_test=[0, 1]), "must match"),
        (dict(x=np.zeros((4, 2)), y=[0, 1, 1, 0], x_test=np.zeros((2, 2))), "both or neither"),
    ],
)
def test_npz_malformed(tmp_path, arrays, msg):
    path = _npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=msg):
        load_dataset("npz", root=path)


def test_npz_missing_and_unreadable(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset("npz", root=tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="junk.npz"):
        load_dataset("npz", root=tmp_path / "junk.npz")
    np.savez(tmp_path / "obj.npz", x=np.array([{}, {}], dtype=object), y=[0, 1])
    with pytest.raises(DataError, match="obj.npz"):
        load_dataset("npz", root=tmp_path / "obj.npz")


def test_npz_num_classes_option_checks_labels(tmp_path):
    path = _npz(tmp_path / "n.npz", x=np.zeros((8, 2)), y=[0, 1, 3, 0, 0, 1, 3, 0])
    assert load_dataset("npz", root=path, num_classes=6).num_classes == 6
    with pytest.raises(DataError, match=r"\[0, 3\)"):
        load_dataset("npz", root=path, num_classes=3)
