"""Input-policy declarations for Hecate FSSDP in `jaxdyn.schemes` (merged by ``schemes.py``).

The sharded MoE layers take a mesh: here a 1-device mesh in this process (the 8-device numbers are
checked in ``tests/schemes/test_fssdp.py``'s subprocess).
"""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import strategies as st
from jax.sharding import Mesh

from tests.scale.input_policy.spec import KEY, Case, Spec, bad_count, collector, fn

SCH = "jaxdyn.schemes"
CASES: list[Case] = []
SPECS: list[Spec] = []
case = collector(CASES)

MESH = Mesh(np.array(jax.devices()[:1]), ("data",))
PARAMS = fn(f"{SCH}.init_moe_params")(jax.random.key(1), 4, 8, 3)
TOKENS = np.asarray(jax.random.normal(jax.random.key(2), (6, 4)))
SHARDED = {"moe_fsdp": {}, "moe_fssdp": {"capacity": 3}, "moe_expert_parallel": {"capacity": 6}}
bad_params = st.sampled_from([None, 3, "params", [1, 2], {"w1": np.ones((3, 4, 8))},
                              {**PARAMS, "b1": np.zeros((3, 7))}, {**PARAMS, "w1": np.ones((3, 4))}])
bad_width = st.integers(1, 9).filter(lambda n: n != 4)
bad_mesh = st.sampled_from([None, "data", 8, jax.devices()[:1]])
bad_axis = st.sampled_from(["model", "", None, 3, ("data",)])
bad_scheme = st.text(max_size=8).filter(lambda s: s not in ("fsdp", "fssdp", "ep"))

case(f"{SCH}.init_moe_params", "dim", bad_count)(lambda v: fn(f"{SCH}.init_moe_params")(KEY, v, 8, 3))
case(f"{SCH}.init_moe_params", "hidden", bad_count)(lambda v: fn(f"{SCH}.init_moe_params")(KEY, 4, v, 3))
case(f"{SCH}.init_moe_params", "num_experts", bad_count)(lambda v: fn(f"{SCH}.init_moe_params")(KEY, 4, 8, v))
case(f"{SCH}.moe_reference", "params", bad_params)(lambda v: fn(f"{SCH}.moe_reference")(v, TOKENS))
case(f"{SCH}.moe_reference", "x", bad_width)(lambda n: fn(f"{SCH}.moe_reference")(PARAMS, np.ones((6, n), np.float32)))
case(f"{SCH}.moe_reference", "x", st.integers(0, 3).filter(lambda n: n != 2))(  # not (T, d)
    lambda n: fn(f"{SCH}.moe_reference")(PARAMS, np.ones((2,) * (n - 1) + (4,), np.float32) if n else 4.0))
for _name, _kw in SHARDED.items():
  _f = f"{SCH}.{_name}"
  case(_f, "params", bad_params)(lambda v, _f=_f, _kw=_kw: fn(_f)(v, TOKENS, mesh=MESH, **_kw))
  case(_f, "x", bad_width)(lambda n, _f=_f, _kw=_kw: fn(_f)(PARAMS, np.ones((6, n), np.float32), mesh=MESH, **_kw))
  case(_f, "mesh", bad_mesh)(lambda v, _f=_f, _kw=_kw: fn(_f)(PARAMS, TOKENS, mesh=v, **_kw))
  case(_f, "axis", bad_axis)(lambda v, _f=_f, _kw=_kw: fn(_f)(PARAMS, TOKENS, mesh=MESH, axis=v, **_kw))
case(f"{SCH}.moe_fssdp", "capacity", st.one_of(bad_count, st.integers(min_value=4)))(  # E = 3
    lambda v: fn(f"{SCH}.moe_fssdp")(PARAMS, TOKENS, mesh=MESH, capacity=v))
case(f"{SCH}.moe_expert_parallel", "capacity", st.one_of(bad_count, st.integers(min_value=7)))(  # T / D = 6
    lambda v: fn(f"{SCH}.moe_expert_parallel")(PARAMS, TOKENS, mesh=MESH, capacity=v))
case(f"{SCH}.moe_param_specs", "scheme", bad_scheme)(lambda v: fn(f"{SCH}.moe_param_specs")(v))
case(f"{SCH}.moe_param_specs", "axis", st.sampled_from(["", None, 3, ("data",)]))(
    lambda v: fn(f"{SCH}.moe_param_specs")("fsdp", v))
case(f"{SCH}.collective_bytes", "fn", st.sampled_from([None, 3, "moe_fsdp", [len]]))(
    lambda v: fn(f"{SCH}.collective_bytes")(v, TOKENS))

_PARAMS = "the dict of init_moe_params; its kind, keys and shapes checked by Cases"
_MESH = "a jax.sharding.Mesh and one of its axis names, checked by Cases"


def _sharded(name):
  return lambda params, x, mesh, **kw: fn(f"{SCH}.{name}")(params, x, mesh=mesh, **kw)


SPECS += [
    Spec(f"{SCH}.init_moe_params", dict(key=KEY, dim=4, hidden=8, num_experts=3),
         numbers=("dim", "hidden", "num_experts"), keys=("key",)),
    Spec(f"{SCH}.moe_reference", dict(params=PARAMS, x=TOKENS), floats=("x",), batch=("x",), jit=True,
         not_applicable={"params": _PARAMS}),
    Spec(f"{SCH}.moe_param_specs", dict(scheme="fssdp", axis="data"),
         not_applicable={"scheme": "a name, checked by a Case", "axis": "a mesh axis name, checked by a Case"}),
    Spec(f"{SCH}.collective_bytes", dict(fn=lambda x: x * 2, x=TOKENS),
         call=lambda **kw: fn(f"{SCH}.collective_bytes")(kw["fn"], kw["x"]),
         not_applicable={"fn": "any traceable function of its arguments; a non-callable is a Case"}),
]
for _name, _kw in SHARDED.items():
  SPECS.append(Spec(f"{SCH}.{_name}", dict(params=PARAMS, x=TOKENS, mesh=MESH, **_kw), call=_sharded(_name),
                    floats=("x",), batch=("x",), jit=True, numbers=tuple(_kw),
                    not_applicable={"params": _PARAMS, "mesh": _MESH, "axis": _MESH}))
EXEMPT: dict[str, str] = {}
