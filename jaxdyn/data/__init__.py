"""Datasets and grain input pipelines.

``load_dataset(name)`` gives train and eval sources (``mnist1d``, ``digits``, ``synthetic``, the synthetic
action ``clips`` and their ``clip_frames`` offline;
``tfds:<name>`` through ``tfds.data_source``); ``train_pipeline`` turns a source into a seeded,
per-process-sharded stream of batches, optionally augmented (``random_crop_flip``, the standard CIFAR
crop and flip). ``load_stdlib_corpus`` gives the Python standard library's sources as byte-token documents
(a real offline text corpus, split by file), ``load_tfds_text`` a prepared TFDS text dataset the same way,
and ``synthetic_documents`` variable-length test documents. ``paired_digits`` gives captioned, rendered
digits (paired image-text data with grammar rewrites, offline), ``load_tfds_paired`` a prepared TFDS
image-text dataset the same way.
"""

from jaxdyn.data._augment import AUGMENTATIONS, get_augmentation, random_crop_flip
from jaxdyn.data._paired import (
    CaptionVocab,
    PairedData,
    load_rewrites,
    load_tfds_paired,
    paired_digits,
    render_digit,
    with_rewrites,
)
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
from jaxdyn.data._text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    VOCAB_SIZE,
    TextCorpus,
    load_stdlib_corpus,
    load_tfds_text,
    synthetic_documents,
)

__all__ = [
    "AUGMENTATIONS",
    "ArraySource",
    "BOS_ID",
    "CaptionVocab",
    "DATASETS",
    "Dataset",
    "DatasetNotPreparedError",
    "EOS_ID",
    "PAD_ID",
    "PairedData",
    "TextCorpus",
    "VOCAB_SIZE",
    "check_dataset_name",
    "default_cache_dir",
    "eval_batches",
    "get_augmentation",
    "load_dataset",
    "load_rewrites",
    "load_stdlib_corpus",
    "load_tfds_paired",
    "load_tfds_text",
    "paired_digits",
    "random_crop_flip",
    "render_digit",
    "synthetic_documents",
    "train_pipeline",
    "with_rewrites",
]
