"""mnist1d_random_labels: train labels a seeded permutation of the true ones, eval untouched."""

import numpy as np

from jaxdyn import data


def test_random_labels_permute_train_and_keep_eval():
  true = data.load_dataset("mnist1d")
  rand = data.load_dataset("mnist1d_random_labels")
  assert rand.name == "mnist1d_random_labels"
  np.testing.assert_array_equal(rand.train.x, true.train.x)
  # A permutation: the same multiset of labels ...
  np.testing.assert_array_equal(np.sort(rand.train.y), np.sort(true.train.y))
  assert rand.train.y.dtype == true.train.y.dtype
  # ... but not the same assignment: close to chance agreement (10 balanced-ish classes).
  agree = float(np.mean(rand.train.y == true.train.y))
  assert agree < 0.2, agree
  # Deterministic across loads.
  np.testing.assert_array_equal(data.load_dataset("mnist1d_random_labels").train.y, rand.train.y)
  # Eval split is the true one.
  np.testing.assert_array_equal(rand.eval.x, true.eval.x)
  np.testing.assert_array_equal(rand.eval.y, true.eval.y)
  assert "mnist1d_random_labels" in data.DATASETS
