"""The standard-library text corpus and the synthetic documents."""

import hashlib
import os
import platform

import numpy as np
import pytest

from jaxdyn import data


def test_split_is_deterministic_disjoint_by_file_and_covers_all():
  tr, va, al = (data.load_stdlib_corpus(s) for s in ("train", "validation", "all"))
  assert set(tr.names).isdisjoint(va.names) and sorted(tr.names + va.names) == list(al.names)
  assert list(al.names) == sorted(al.names) and len(va) > 0 and len(tr) > 5 * len(va)
  # the rule by hand: sha256 of the relative path, first 8 bytes big-endian, below 0.1 * 2^64
  for name in al.names[:50]:
    h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    assert (name in va.names) == (h < 0.1 * 2**64)
  # loading again gives the same split and tokens
  again = data.load_stdlib_corpus("validation")
  assert again.names == va.names and all(np.array_equal(a, b) for a, b in zip(again.documents, va.documents))
  wider = data.load_stdlib_corpus("validation", validation_fraction=0.3)
  assert set(va.names) <= set(wider.names)


def test_documents_are_the_files_bytes_with_package_metadata_and_version():
  al = data.load_stdlib_corpus("all")
  assert al.python_version == platform.python_version() and al.source == "stdlib" and al.split == "all"
  i = al.names.index("json/decoder.py")
  assert al.packages[i] == "json" and al[i]["package"] == "json"
  import json.decoder
  with open(json.decoder.__file__, "rb") as f:
    assert np.array_equal(al.documents[i], np.frombuffer(f.read(), np.uint8))
  assert al.packages[al.names.index("os.py")] == "os"
  assert al.packages[al.names.index("xml/etree/ElementTree.py")] == "xml"
  assert all(d.dtype == np.uint8 and len(d) > 0 for d in al.documents)
  parts = {p for n in al.names for p in n.split("/")[:-1]}
  assert parts.isdisjoint(data._text.EXCLUDED_DIRS)
  assert al.num_tokens == int(al.lengths.sum()) and len(al) == len(al.lengths)
  assert (data.BOS_ID, data.EOS_ID, data.PAD_ID, data.VOCAB_SIZE) == (256, 257, 258, 259)


def test_any_source_tree_and_exclusions(tmp_path):
  for rel, body in [("a.py", b"x = 1\n"), ("pkg/b.py", b"y"), ("pkg/tests/t.py", b"t"), ("site-packages/s.py", b"s"),
                    ("pkg/empty.py", b""), ("pkg/notes.txt", b"n")]:
    os.makedirs(tmp_path / os.path.dirname(rel), exist_ok=True)
    (tmp_path / rel).write_bytes(body)
  c = data.load_stdlib_corpus("all", root=tmp_path)
  assert c.names == ("a.py", "pkg/b.py") and c.packages == ("a", "pkg")
  assert c.documents[1].tolist() == [ord("y")]


def test_synthetic_documents_have_the_stated_structure():
  c = data.synthetic_documents(5, 20, min_len=3, max_len=9, vocab=17)
  rng = np.random.default_rng(5)
  lengths, starts = rng.integers(3, 10, size=20), rng.integers(0, 17, size=20)
  assert c.lengths.tolist() == lengths.tolist()
  for d, s in zip(c.documents, starts):
    assert d.tolist() == [(s + t) % 17 for t in range(len(d))]
  assert c.packages[:5] == ("pkg0", "pkg1", "pkg2", "pkg3", "pkg0") and c.source == "synthetic"


def test_bad_inputs_raise_with_the_projects_messages(tmp_path):
  with pytest.raises(ValueError, match="split: must be one of"):
    data.load_stdlib_corpus("test")
  with pytest.raises(ValueError, match="validation_fraction: must be a finite real number in \\(0, 1\\)"):
    data.load_stdlib_corpus(validation_fraction=1.0)
  with pytest.raises(TypeError, match="root: must be a path"):
    data.load_stdlib_corpus(root=3)
  with pytest.raises(ValueError, match="root: must be a directory"):
    data.load_stdlib_corpus(root=tmp_path / "missing")
  with pytest.raises(ValueError, match="root: holds no non-empty"):
    data.load_stdlib_corpus(root=tmp_path)
  with pytest.raises(ValueError, match="max_len: must be an int >= 4"):
    data.synthetic_documents(0, 3, min_len=4, max_len=3)
  with pytest.raises(ValueError, match="vocab: must be an int in \\[2, 256\\]"):
    data.synthetic_documents(0, 3, min_len=1, max_len=3, vocab=300)
  with pytest.raises(ValueError, match="n: must be an int >= 1"):
    data.synthetic_documents(0, 0, min_len=1, max_len=3)
  with pytest.raises(ValueError, match="documents: must be 1-D uint8"):
    data.TextCorpus((np.zeros(3, np.int32),), ("a",), ("a",), "3", "synthetic", "all")


def test_tfds_text_through_mock_data():
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=5):
    c = data.load_tfds_text("imdb_reviews", "test", metadata="label")
    src = tfds.data_source("imdb_reviews", split="test")
    texts = [src[i]["text"] for i in range(5)]
    labels = [str(int(src[i]["label"])) for i in range(5)]
    short = data.load_tfds_text("lm1b", max_documents=2)
  kept = [i for i, t in enumerate(texts) if t]
  assert [bytes(d).decode() for d in c.documents] == [texts[i] for i in kept]
  assert list(c.packages) == [labels[i] for i in kept] and c.names[0] == f"imdb_reviews/test/{kept[0]}"
  assert c.source == "tfds:imdb_reviews" and c.split == "test" and c.python_version == platform.python_version()
  assert len(short) <= 2 and set(short.packages) == {"lm1b"}
  with tfds.testing.mock_data(num_examples=2):
    with pytest.raises(ValueError, match="feature: tfds:lm1b records have no 'body'"):
      data.load_tfds_text("lm1b", feature="body")


def test_unprepared_tfds_text_says_how_to_prepare(tmp_path):
  with pytest.raises(data.DatasetNotPreparedError, match=r"tfds build lm1b --file_format=array_record"):
    data.load_tfds_text("lm1b", data_dir=str(tmp_path))
