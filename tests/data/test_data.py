import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxdyn import data


def _take(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)]


@pytest.mark.parametrize("name", ["mnist1d", "digits", "synthetic"])
def test_offline_datasets_load(name):
  d = data.load_dataset(name)
  r = d.train[0]
  assert r["x"].dtype == np.float32 and r["x"].shape == d.input_shape
  assert 0 <= int(r["y"]) < d.num_classes
  assert len(d.train) > len(d.eval) > 0
  ys = np.asarray(d.train.y)
  assert set(np.unique(ys)) == set(range(d.num_classes))


def test_mnist1d_leaves_numpy_global_seed_alone(tmp_path):
  np.random.seed(123)
  expected = np.random.rand(3)
  np.random.seed(123)
  data.load_dataset("mnist1d", cache_dir=tmp_path)  # generates (not cached in tmp_path)
  np.testing.assert_array_equal(np.random.rand(3), expected)
  assert (tmp_path / "mnist1d_5000.npz").exists()
  again = data.load_dataset("mnist1d", cache_dir=tmp_path)  # from the cache: same arrays
  np.testing.assert_array_equal(again.train.x, data.load_dataset("mnist1d", cache_dir=tmp_path).train.x)


def test_same_seed_same_batches_other_seed_other_batches():
  d = data.load_dataset("digits")
  a = _take(data.train_pipeline(d.train, batch_size=32, seed=3), 5)
  b = _take(data.train_pipeline(d.train, batch_size=32, seed=3), 5)
  c = _take(data.train_pipeline(d.train, batch_size=32, seed=4), 5)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["x"], y["x"])
    np.testing.assert_array_equal(x["y"], y["y"])
  assert not all(np.array_equal(x["x"], z["x"]) for x, z in zip(a, c))


def test_epoch_covers_every_example_once_and_reshuffles():
  src = data.ArraySource(np.arange(64, dtype=np.float32)[:, None], np.zeros(64, np.int32))
  batches = _take(data.train_pipeline(src, batch_size=16, seed=0), 8)
  ep1 = np.concatenate([b["x"][:, 0] for b in batches[:4]])
  ep2 = np.concatenate([b["x"][:, 0] for b in batches[4:]])
  assert sorted(ep1) == list(range(64)) and sorted(ep2) == list(range(64))
  assert not np.array_equal(ep1, ep2)


def test_process_shards_are_disjoint_and_cover_the_global_batch():
  src = data.ArraySource(np.arange(64, dtype=np.float32)[:, None], np.zeros(64, np.int32))
  shards = [_take(data.train_pipeline(src, batch_size=16, seed=0, process_index=p, process_count=2), 4)
            for p in range(2)]
  for step in range(4):
    a, b = (set(s[step]["x"][:, 0].tolist()) for s in shards)
    assert len(a) == len(b) == 8 and not a & b
  seen = set().union(*(set(b["x"][:, 0].tolist()) for s in shards for b in s))
  assert seen == set(range(64))


def test_iterator_state_resumes_the_stream():
  d = data.load_dataset("digits")
  ds = data.train_pipeline(d.train, batch_size=32, seed=0)
  it = iter(ds)
  for _ in range(7):
    next(it)
  state = it.get_state()
  expected = next(it)
  it2 = iter(ds)
  it2.set_state(state)
  np.testing.assert_array_equal(next(it2)["x"], expected["x"])


def test_eval_batches_pad_and_mask():
  src = data.ArraySource(np.arange(10, dtype=np.float32)[:, None], np.arange(10, dtype=np.int32))
  bs = list(data.eval_batches(src, batch_size=4))
  assert [b["x"].shape[0] for b in bs] == [4, 4, 4]
  np.testing.assert_array_equal(bs[-1]["mask"], [1, 1, 0, 0])
  assert sum(b["mask"].sum() for b in bs) == 10


@pytest.mark.parametrize("name,shape,classes", [("mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10),
                                                ("cifar100", (32, 32, 3), 100)])
def test_tfds_through_mock_data(name, shape, classes):
  with tfds.testing.mock_data(num_examples=24):
    d = data.load_dataset(f"tfds:{name}")
    assert d.input_shape == shape and d.num_classes == classes
    b = next(iter(data.train_pipeline(d.train, batch_size=8, seed=0)))
  assert b["x"].shape == (8, *shape) and b["x"].dtype == np.float32
  assert 0.0 <= b["x"].min() and b["x"].max() <= 1.0
  assert b["y"].dtype == np.int32 and (b["y"] < classes).all()


def test_unprepared_tfds_says_how_to_prepare(tmp_path):
  with pytest.raises(data.DatasetNotPreparedError, match=r"tfds build cifar10 --file_format=array_record"):
    data.load_dataset("tfds:cifar10", data_dir=str(tmp_path))


def test_unknown_dataset_and_bad_pipeline_arguments():
  with pytest.raises(ValueError, match="name: unknown dataset 'nope'"):
    data.load_dataset("nope")
  d = data.load_dataset("digits")
  with pytest.raises(ValueError, match="batch_size"):
    data.train_pipeline(d.train, batch_size=15, seed=0, process_count=2)
  with pytest.raises(ValueError, match="process_index"):
    data.train_pipeline(d.train, batch_size=16, seed=0, process_index=2, process_count=2)
