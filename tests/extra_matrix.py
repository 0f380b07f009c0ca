"""The test matrix of ``test_libraries.py`` and ``test_autodiff.py`` for the
losses beyond MLX's, whose cases live in their family's test module.

A family's module lists :class:`Case` objects (a float64 reference written
from the formula, seeded inputs away from the kinks) and runs the shared
checks on them through the thin ``test_*`` functions it defines; the checks
are those of the 14 (imported under names pytest does not collect), plus the
ones that compare with ``mlx.nn.losses`` there, done here against the
central differences of the reference instead (MLX has no such loss).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

from backends import LIBRARIES, to_numpy
from test_autodiff import _as_tuple, _split, numeric_grad
from test_autodiff import test_jax_grad_and_jit_of_grad as check_jax_grad
from test_autodiff import test_jax_jit as check_jax_jit
from test_autodiff import test_jax_jit_static_argnames as check_jax_jit_static
from test_autodiff import test_mlx_compile as check_mlx_compile
from test_autodiff import test_torch_backward_matches_numeric as check_torch_backward
from test_autodiff import test_torch_gradcheck as check_torch_gradcheck
from test_libraries import HALF, assert_close
from test_libraries import Case as _Case
from test_libraries import test_equals_numpy_float32 as check_equals_numpy
from test_libraries import test_torch_result_on_input_device as check_torch_devices
from test_libraries import test_values_type_shape_dtype as check_values

__all__ = [
    "Case",
    "cases_of",
    "check_equals_numpy",
    "check_jax_grad",
    "check_jax_jit",
    "check_jax_jit_static",
    "check_mlx_compile",
    "check_mlx_grad",
    "check_torch_backward",
    "check_torch_compile",
    "check_torch_devices",
    "check_torch_gradcheck",
    "check_values",
    "first_of_each",
    "value_params",
]


@dataclass(frozen=True)
class Case(_Case):
    """A case of ``test_libraries`` whose float64 reference is given with it."""

    ref: Callable[..., np.ndarray] | None = None
    #: the floating inputs not differentiated (targets -1 or 1, which a
    #: finite-difference step would move out of their checked range)
    constant: tuple[str, ...] = ()

    @property
    def reference(self) -> Callable[..., np.ndarray]:
        return self.ref

    def differentiable(self) -> list[str]:
        return [k for k in super().differentiable() if k not in self.constant]


def cases_of(entries: list[tuple]) -> list[Case]:
    """Cases from ``(id, loss, make, params, reference[, constant])``, seeded by position."""
    return [Case(*e[:4], seed=100 + n, ref=e[4], constant=tuple(e[5:6] and e[5])) for n, e in enumerate(entries)]


def first_of_each(cases: list[Case]) -> list[Case]:
    return [c for i, c in enumerate(cases) if c.loss not in {d.loss for d in cases[:i]}]


# JAX compiles each configuration (loss, parameters, reduction, dtypes): it
# runs every case in float32 and the first of each loss in the other dtypes.
COMPILING = ("jax",)


def value_params(cases: list[Case]) -> list[Any]:
    """(library, dtype, case): every case in float32 and float64, the first
    case of each loss in the library's half-precision dtypes."""
    firsts = first_of_each(cases)
    return [
        pytest.param(lib, dtype, case, id=f"{lib}-{dtype}-{case.id}")
        for lib in LIBRARIES
        for dtype in ("float32", "float64", *HALF[lib])
        for case in (cases if dtype == "float32" or (dtype == "float64" and lib not in COMPILING) else firsts)
    ]


def check_mlx_grad(case: Case) -> None:
    """``mx.value_and_grad`` and ``mx.grad`` in float32 give the float64
    reference and its central differences."""
    import mlx.core as mx

    arrays, names, cotangent = _split(case)
    inputs = {k: mx.array(v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    argnums = list(range(len(names)))

    def objective(*xs):
        return case.func(**{**inputs, **dict(zip(names, xs))}, **case.params, reduction="mean")

    value, grads = mx.value_and_grad(objective, argnums=argnums)(*(inputs[k] for k in names))
    grad_only = mx.grad(objective, argnums=argnums)(*(inputs[k] for k in names))
    held = {k: (np.array(x).astype(np.float64) if k in names else arrays[k]) for k, x in inputs.items()}
    assert_close(np.array(value), case.expected(held, "mean"), "float32", factor=4)
    n = cotangent.size
    for name, g, g2 in zip(names, _as_tuple(grads), _as_tuple(grad_only)):
        assert g.dtype == mx.float32 and tuple(g.shape) == arrays[name].shape
        np.testing.assert_array_equal(np.array(g), np.array(g2))
        want = numeric_grad(case, held, name, np.full(cotangent.shape, 1.0 / n))
        assert_close(np.array(g), want, "float32", factor=50)


def check_torch_compile(case: Case) -> None:
    """``torch.compile(fullgraph=True, backend="aot_eager")`` of the loss and
    its backward give the eager values."""
    import torch

    torch._dynamo.reset()
    arrays, names, _ = _split(case)
    order = list(arrays)

    def f(*xs):
        return case.func(**dict(zip(order, xs)), **case.params, reduction="mean")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
        eager_in = [torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order]
        comp_in = [torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order]
        got = compiled(*comp_in)
        got.backward()
    want = f(*eager_in)
    want.backward()
    assert got.dtype == want.dtype == torch.float64
    assert_close(got.item(), case.expected(arrays, "mean"), "float64")
    for a, b, k in zip(comp_in, eager_in, order):
        if k in names:
            assert_close(to_numpy(a.grad), to_numpy(b.grad), "float64")
