"""The names ``data.name`` accepts, without importing a loader (``deepfusion train --help`` lists
them and stays free of torch); ``model.data`` routes each name to its loader."""

DATASETS = (
    "synthetic",
    "synthetic_images",
    "theory",
    "digits",
    "fashion_mnist",
    "cifar10",
    "cifar100",
    "tiny_imagenet",
    "npz",
)
