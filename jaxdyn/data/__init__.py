"""Datasets and grain input pipelines.

``load_dataset(name)`` gives train and eval sources (``mnist1d``, ``digits``, ``synthetic``, the synthetic
action ``clips`` and their ``clip_frames`` offline;
``tfds:<name>`` through ``tfds.data_source``); ``train_pipeline`` turns a source into a seeded,
per-process-sharded stream of batches, optionally augmented (``random_crop_flip``, the standard CIFAR
crop and flip).
"""

from jaxdyn.data._augment import AUGMENTATIONS, get_augmentation, random_crop_flip
from jaxdyn.data._pipeline import eval_batches, train_pipeline
from jaxdyn.data._sources import (
    DATASETS,
    ArraySource,
    Dataset,
    DatasetNotPreparedError,
    check_dataset_name,
    default_cache_dir,
    load_dataset,
)

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "ArraySource",
    "Dataset",
    "DatasetNotPreparedError",
    "check_dataset_name",
    "default_cache_dir",
    "eval_batches",
    "get_augmentation",
    "load_dataset",
    "random_crop_flip",
    "train_pipeline",
]
