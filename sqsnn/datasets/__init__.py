"""Datasets: embedded (``digits``, ``mnist-5k``), IDX files on disk (``mnist``, ``fmnist``, ``kmnist``) and
event recordings (``mnist-dvs``), all loaded into one :class:`Dataset` container.

Nothing is ever downloaded and nothing is cached: on-disk datasets are read from the directory given as
``data_dir`` (CLI ``--data-dir``) or the ``SQSNN_DATA_DIR`` environment variable, or from a subdirectory of
it named like the dataset. ``list_datasets()`` describes every dataset; ``load_dataset(name, ...)`` loads one.
"""

from sqsnn.datasets.base import DATA_DIR_ENV, Dataset, DatasetError
from sqsnn.datasets.registry import DatasetInfo, list_datasets, load_dataset

__all__ = ["DATA_DIR_ENV", "Dataset", "DatasetError", "DatasetInfo", "list_datasets", "load_dataset"]
