"""Named datasets as random-access sources of ``{"x": float32, "y": int32}`` records."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArraySource:
  """A random-access source over in-memory arrays (grain's ``RandomAccessDataSource`` protocol)."""

  x: np.ndarray
  y: np.ndarray

  def __post_init__(self):
    if np.ndim(self.x) < 1:
      raise ValueError(f"x: must hold one example per leading index, got shape {np.shape(self.x)}")
    if np.ndim(self.y) != 1 or not np.issubdtype(np.asarray(self.y).dtype, np.integer):
      raise ValueError(f"y: must be 1-D integer class ids, got {np.asarray(self.y).dtype} of shape {np.shape(self.y)}")
    if len(self.x) != len(self.y):
      raise ValueError(f"y: length {len(self.y)} does not match x's {len(self.x)}")

  def __len__(self) -> int:
    return len(self.x)

  def __getitem__(self, i):
    return {"x": self.x[i], "y": self.y[i]}

  def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": self.x[idx], "y": self.y[idx]}


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A named dataset: train and eval sources plus what a model needs to know about them."""

  name: str
  train: Any
  eval: Any
  input_shape: tuple[int, ...]
  num_classes: int


class DatasetNotPreparedError(ValueError):
  """A TFDS dataset has not been prepared in array_record format where jaxdyn looks for it."""


def default_cache_dir() -> pathlib.Path:
  """``$JAXDYN_CACHE`` or ``~/.cache/jaxdyn``: where generated datasets are cached."""
  return pathlib.Path(os.environ.get("JAXDYN_CACHE", pathlib.Path.home() / ".cache" / "jaxdyn"))


def _cached(path: pathlib.Path, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  if path.exists():
    with np.load(path) as f:
      return dict(f)
  arrays = make()
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
  np.savez(tmp, **arrays)
  os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache
  return arrays


def _mnist1d(cache_dir: pathlib.Path, num_samples: int = 5000) -> Dataset:
  """MNIST-1D (Greydanus & Kobak 2024), generated offline with the package's ``make_dataset``."""

  def make():
    from mnist1d.data import get_dataset_args, make_dataset  # pylint: disable=g-import-not-at-top

    args = get_dataset_args()
    args.num_samples = num_samples
    saved = np.random.get_state()  # make_dataset reseeds numpy's global RNG: put it back.
    try:
      d = make_dataset(args)
    finally:
      np.random.set_state(saved)
    return {k: np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test")}

  a = _cached(cache_dir / f"mnist1d_{num_samples}.npz", make)
  return Dataset(
      "mnist1d",
      ArraySource(a["x"].astype(np.float32), a["y"].astype(np.int32)),
      ArraySource(a["x_test"].astype(np.float32), a["y_test"].astype(np.int32)),
      input_shape=(a["x"].shape[1],),
      num_classes=10,
  )


def _mnist1d_random_labels(cache_dir: pathlib.Path, seed: int = 0) -> Dataset:
  """MNIST-1D with the train labels replaced by a seeded random permutation of them (eval labels true).

  The overfitting arm of Zhang et al. (2017), as used by Liao, Liu et al. (arXiv 2312.04823): the
  label histogram is kept, any link between input and label is broken.
  """
  d = _mnist1d(cache_dir)
  y = np.random.default_rng(seed).permutation(d.train.y)
  return dataclasses.replace(d, name="mnist1d_random_labels", train=ArraySource(d.train.x, y))


def _digits(cache_dir: pathlib.Path) -> Dataset:
  """scikit-learn's 8x8 digits (1,797 images), split 80/20 stratified with a fixed seed."""
  del cache_dir
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  from sklearn.model_selection import train_test_split  # pylint: disable=g-import-not-at-top

  d = load_digits()
  x = (d.images / 16.0).astype(np.float32)[..., None]
  y = d.target.astype(np.int32)
  xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
  return Dataset("digits", ArraySource(xtr, ytr), ArraySource(xte, yte), (8, 8, 1), 10)


def _synthetic(cache_dir: pathlib.Path) -> Dataset:
  """A 10-class, 32-feature classification problem from scikit-learn's ``make_classification``."""
  del cache_dir
  from sklearn.datasets import make_classification  # pylint: disable=g-import-not-at-top

  x, y = make_classification(
      n_samples=4000, n_features=32, n_informative=12, n_redundant=4, n_classes=10,
      n_clusters_per_class=1, class_sep=1.5, random_state=0,
  )
  x = x.astype(np.float32)
  y = y.astype(np.int32)
  return Dataset("synthetic", ArraySource(x[:3200], y[:3200]), ArraySource(x[3200:], y[3200:]), (32,), 10)


def _clips(cache_dir: pathlib.Path) -> Dataset:
  """Synthetic action clips (``jaxdyn.data._clips``): a digit moving in one of 8 directions, x (8, 16, 16, 1)."""
  del cache_dir  # generated from fixed seeds in well under a second
  from jaxdyn.data import _clips as c  # pylint: disable=g-import-not-at-top

  tr, te = (c.make_clips(n, seed=s) for n, s in zip((c.NUM_TRAIN, c.NUM_EVAL), c.CLIP_SEEDS))
  return Dataset("clips", ArraySource(tr["x"], tr["y"]), ArraySource(te["x"], te["y"]),
                 tr["x"].shape[1:], len(c.DIRECTIONS))


def _clip_frames(cache_dir: pathlib.Path) -> Dataset:
  """Single frames of the clips' generator labelled by the digit's cell on a 4 x 4 grid (frame pre-training)."""
  del cache_dir
  from jaxdyn.data import _clips as c  # pylint: disable=g-import-not-at-top

  tr, te = (c.make_frames(n, seed=s) for n, s in zip((c.NUM_TRAIN, c.NUM_EVAL), c.FRAME_SEEDS))
  return Dataset("clip_frames", ArraySource(tr["x"], tr["y"]), ArraySource(te["x"], te["y"]),
                 tr["x"].shape[1:], c.GRID * c.GRID)


@dataclasses.dataclass(frozen=True)
class TfdsSource:
  """A TFDS ``data_source`` mapped to ``{"x": float32 in [0, 1], "y": int32}`` records."""

  source: Any

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i):
    r = self.source[int(i)]
    return {"x": np.asarray(r["image"], np.float32) / 255.0, "y": np.int32(r["label"])}

  def gather(self, idx: np.ndarray) -> dict[str, np.ndarray]:
    recs = [self.source[int(i)] for i in idx]
    x = np.stack([np.asarray(r["image"], np.float32) for r in recs]) / 255.0
    return {"x": x, "y": np.asarray([r["label"] for r in recs], np.int32)}


_TFDS_CLASSES = {"mnist": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "svhn_cropped": 10}


def tfds_data_source(name: str, split: str, data_dir: str | os.PathLike | None):
  """``tfds.data_source(name, split=split)`` of a prepared dataset, never downloading.

  A dataset not prepared in the array_record format raises `DatasetNotPreparedError` saying how to
  build it (TensorFlow is needed to build it, not to read it, and is not a jaxdyn dependency).
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  data_dir = None if data_dir is None else os.fspath(data_dir)
  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # pylint: disable=broad-except
    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    raise DatasetNotPreparedError(
        f"name: tfds:{name} (split {split!r}) is not prepared in array_record format under {where} "
        f"({type(e).__name__}). Prepare it once on a machine with network access and TensorFlow installed "
        f"(TensorFlow is not a jaxdyn dependency; a separate environment is fine):\n"
        f"    pip install tensorflow tensorflow-datasets\n"
        f"    tfds build {name} --file_format=array_record --data_dir={where}\n"
        f"then point jaxdyn at it with --config.data_dir={where} (or TFDS_DATA_DIR)."
    ) from e


def _tfds(name: str, data_dir: str | None) -> Dataset:
  if name not in _TFDS_CLASSES:
    raise ValueError(f"name: tfds:{name} is not supported; supported are "
                     f"{['tfds:' + n for n in sorted(_TFDS_CLASSES)]}")
  train = tfds_data_source(name, "train", data_dir)
  test = tfds_data_source(name, "test", data_dir)
  shape = tuple(int(s) for s in train[0]["image"].shape)
  return Dataset(f"tfds:{name}", TfdsSource(train), TfdsSource(test), shape, _TFDS_CLASSES[name])


_BUILTIN = {"mnist1d": _mnist1d, "mnist1d_random_labels": _mnist1d_random_labels, "digits": _digits,
            "synthetic": _synthetic, "clips": _clips, "clip_frames": _clip_frames}
DATASETS: Sequence[str] = tuple(sorted(_BUILTIN)) + tuple(f"tfds:{n}" for n in sorted(_TFDS_CLASSES))


def check_dataset_name(name: str) -> None:
  """Raises ``ValueError`` naming the valid datasets if ``name`` is not one of them."""
  if not isinstance(name, str) or name not in DATASETS:
    raise ValueError(f"name: unknown dataset {name!r}; valid names are {', '.join(DATASETS)}")


def load_dataset(name: str, *, cache_dir: str | os.PathLike | None = None, data_dir: str | None = None) -> Dataset:
  """Loads the named dataset.

  Args:
    name: one of ``DATASETS``: ``mnist1d``, ``digits``, ``synthetic``, ``clips`` (videos
      ``(8, 16, 16, 1)``), ``clip_frames`` (all offline) or ``tfds:<name>``
      (mnist, fashion_mnist, cifar10, cifar100, svhn_cropped), read with ``tfds.data_source``.
    cache_dir: where generated datasets are cached (default :func:`default_cache_dir`).
    data_dir: TFDS data directory (default: TFDS's own default).

  Returns:
    A :class:`Dataset`. Records are ``{"x": float32, "y": int32}``; images are ``(H, W, C)`` in [0, 1].

  Raises:
    ValueError: unknown name. DatasetNotPreparedError (a ValueError): TFDS data not prepared.
  """
  check_dataset_name(name)
  for arg, value in (("cache_dir", cache_dir), ("data_dir", data_dir)):
    if value is not None and not isinstance(value, (str, os.PathLike)):
      raise TypeError(f"{arg}: must be a path, got {type(value).__name__}")
  if name.startswith("tfds:"):
    return _tfds(name[len("tfds:"):], data_dir)
  return _BUILTIN[name](pathlib.Path(cache_dir) if cache_dir else default_cache_dir())
