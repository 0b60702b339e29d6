"""The addition task: formatting, the exact verifier, encoding on jaxdyn.data's vocabulary."""

from __future__ import annotations

import numpy as np
import pytest

from jaxdyn import rl
from jaxdyn.data import BOS_ID, EOS_ID, PAD_ID


def test_verifier_on_hand_cases():
  p = b"0099+0001="
  assert rl.verify(p, b"#100")
  assert rl.verify(p, b"9+1+0=0;9+0+1=0;0+0+1=1;#100")
  assert rl.verify(p, b"#100#0100")  # the last '#' counts; leading zeros are the same number
  assert not rl.verify(p, b"#101")
  assert not rl.verify(p, b"100")          # no '#'
  assert not rl.verify(p, b"#")            # nothing after it
  assert not rl.verify(p, b"#100 ")        # trailing junk
  assert not rl.verify(p, b"#-100")
  assert not rl.verify(p, b"#100#")


@pytest.mark.parametrize("verbosity", [0, 1, 2])
def test_completions_verify_exactly_and_wrong_traces_fail(verbosity):
  probs = rl.addition_problems(50, digits=3, seed=1)
  lengths = []
  for a, b in zip(probs.a.tolist(), probs.b.tolist()):
    prompt = rl.format_prompt(a, b, digits=3)
    good = rl.format_completion(a, b, digits=3, verbosity=verbosity)
    assert rl.verify(prompt, good)
    assert rl.parse_answer(good) == a + b
    assert not rl.verify(prompt, rl.format_completion(a, b, digits=3, verbosity=verbosity, error=1))
    lengths.append(len(good))
  if verbosity == 0:
    assert set(lengths) <= {4, 5}  # '#' and 3 or 4 digits


def test_traces_by_hand():
  assert rl.format_completion(58, 67, digits=2, verbosity=1) == b"5,2,1#125"
  assert rl.format_completion(58, 67, digits=2, verbosity=2) == b"8+7+0=5;5+6+1=2;carry=1;#125"
  assert rl.format_completion(58, 67, digits=2, verbosity=2, error=-3) == b"8+7+0=5;5+6+1=2;carry=1;#122"
  assert rl.format_prompt(5, 67, digits=3) == b"005+067="


def test_problems_are_reproducible_with_ids():
  p, q = rl.addition_problems(20, digits=2, seed=3), rl.addition_problems(20, digits=2, seed=3)
  np.testing.assert_array_equal(p.a, q.a)
  np.testing.assert_array_equal(p.ids, np.arange(20))
  assert p.a.max() < 100 and p.b.min() >= 0


def test_encode_and_decode_round_trip():
  t = rl.encode([b"1+2=", b"3+4="], [b"#3", b"1,0#7"], length=12)
  assert t.dtype == np.int32 and t.shape == (2, 12)
  assert t[0].tolist() == [BOS_ID, *b"1+2=#3", EOS_ID] + [PAD_ID] * 4
  assert rl.decode_completion(t[1, 5:]) == b"1,0#7"
  assert rl.encode([b"1+2="], length=5).tolist() == [[BOS_ID, *b"1+2="]]


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match="length"):
    rl.encode([b"1+2="], [b"#3"], length=4)
  with pytest.raises(ValueError, match="completions"):
    rl.encode([b"1+2="], [b"#3", b"#4"], length=10)
  with pytest.raises(TypeError, match="prompts"):
    rl.encode(["1+2="], length=10)
  with pytest.raises(ValueError, match="prompt"):
    rl.verify(b"1*2=", b"#2")
  with pytest.raises(TypeError, match="completion"):
    rl.parse_answer("#3")
  with pytest.raises(ValueError, match="a"):
    rl.format_prompt(100, 1, digits=2)
  with pytest.raises(ValueError, match="verbosity"):
    rl.format_completion(1, 1, digits=1, verbosity=3)
  with pytest.raises(ValueError, match="error"):
    rl.format_completion(1, 1, digits=1, error=-3)
  with pytest.raises(ValueError, match="digits"):
    rl.addition_problems(3, digits=0, seed=0)
  with pytest.raises(ValueError, match="tokens"):
    rl.decode_completion(np.array([1, 300]))
