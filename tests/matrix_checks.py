"""The test matrix of a loss beyond MLX's 14, shared by their test modules.

A :class:`Spec` is one call of a loss with seeded random inputs and a float64
reference written from its definition (in the loss's test module, never from
our code).  The checks below run a spec on every library and dtype with
every reduction, through torch autograd (``gradcheck``), ``jax.grad``
(against central differences of the reference), ``mx.grad``, ``jax.jit``,
``mx.compile`` and ``torch.compile``, and through the fast paths against
the portable code.  A test module parametrizes them over its specs.

A :class:`Case` is the same for a loss with a ``reduction`` argument, run
through the checks of the 14 in ``test_libraries.py`` and ``test_autodiff.py``
(re-exported here under names pytest does not collect) and the ones below
that take either.  The MLX comparisons of those checks are done against the
central differences of the reference instead (MLX has no such loss).
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pytest

import anyloss
from anyloss import _native
from backends import LIBRARIES, array_type, to_lib, to_numpy
from test_autodiff import test_jax_grad_and_jit_of_grad as check_jax_grad
from test_autodiff import test_jax_jit as check_jax_jit
from test_autodiff import test_jax_jit_static_argnames as check_jax_jit_static
from test_autodiff import test_mlx_compile as check_mlx_compile
from test_autodiff import test_torch_backward_matches_numeric as check_torch_backward
from test_libraries import HALF, as_float64, assert_close, assert_same_device, lib_array, native_dtype
from test_libraries import Case as _Case
from test_libraries import test_equals_numpy_float32 as check_equals_numpy
from test_libraries import test_torch_result_on_input_device as check_torch_devices
from test_libraries import test_values_type_shape_dtype as check_values


@dataclass(frozen=True)
class Spec:
    """One call of a loss: ``loss(**arrays, **params)``."""

    id: str
    loss: str
    make: Callable[[np.random.Generator], dict[str, np.ndarray]]
    reference: Callable[..., np.ndarray]
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    @property
    def func(self) -> Callable[..., Any]:
        return getattr(anyloss, self.loss)

    @property
    def reductions(self) -> tuple[str, ...]:
        """The reductions to try; ``(None,)`` for a loss without the argument."""
        if "reduction" in inspect.signature(self.func).parameters:
            return ("none", "mean", "sum")
        return (None,)

    def arrays(self) -> dict[str, np.ndarray]:
        """The inputs: floating ones in float64, labels as integers."""
        return self.make(np.random.default_rng(self.seed))

    def differentiable(self) -> list[str]:
        return [k for k, v in self.arrays().items() if v.dtype.kind == "f"]

    def call(self, inputs: dict[str, Any], reduction: str | None) -> Any:
        extra = {} if reduction is None else {"reduction": reduction}
        return self.func(**inputs, **self.params, **extra)

    def expected(self, arrays: dict[str, np.ndarray], reduction: str | None) -> np.ndarray:
        as64 = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
        loss = np.asarray(self.reference(**as64, **self.params), dtype=np.float64)
        if reduction == "mean":
            return np.asarray(np.mean(loss))
        if reduction == "sum":
            return np.asarray(np.sum(loss))
        return loss

    def __repr__(self) -> str:  # pytest ids
        return self.id


@dataclass(frozen=True)
class Case(_Case):
    """A case of ``test_libraries`` whose float64 reference is given with it."""

    ref: Callable[..., np.ndarray] | None = None
    #: the floating inputs not differentiated (targets -1 or 1, which a
    #: finite-difference step would move out of their checked range)
    constant: tuple[str, ...] = ()

    reductions = ("none", "mean", "sum")

    @property
    def reference(self) -> Callable[..., np.ndarray]:
        return self.ref

    def differentiable(self) -> list[str]:
        return [k for k in super().differentiable() if k not in self.constant]

    def call(self, inputs: dict[str, Any], reduction: str) -> Any:
        return self.func(**inputs, **self.params, reduction=reduction)


def cases_of(entries: list[tuple]) -> list[Case]:
    """Cases from ``(id, loss, make, params, reference[, constant])``, seeded by position."""
    return [Case(*e[:4], seed=100 + n, ref=e[4], constant=tuple(e[5:6] and e[5])) for n, e in enumerate(entries)]


def ids(specs):
    return [s.id for s in specs]


def first_of_each(specs: list[Any]) -> list[Any]:
    """The first spec or case of each loss."""
    return [s for i, s in enumerate(specs) if s.loss not in {t.loss for t in specs[:i]}]


# JAX compiles each configuration (loss, parameters, reduction, dtypes): it
# runs every case in float32 and the first of each loss in the other dtypes.
COMPILING = ("jax",)


def value_params(cases: list[Case]) -> list[Any]:
    """(library, dtype, case) for ``check_values``: every case in float32 and
    float64, the first case of each loss in the library's half-precision dtypes."""
    firsts = first_of_each(cases)
    return [
        pytest.param(lib, dtype, case, id=f"{lib}-{dtype}-{case.id}")
        for lib in LIBRARIES
        for dtype in ("float32", "float64", *HALF[lib])
        for case in (cases if dtype == "float32" or (dtype == "float64" and lib not in COMPILING) else firsts)
    ]


# ------------------------------------------------------------------ every library


def library_params(specs: list[Spec]) -> list[Any]:
    """(library, dtype, spec): float32 and float64 for every spec, half
    precision for the first spec of each loss."""
    firsts = first_of_each(specs)
    return [
        pytest.param(lib, dtype, spec, id=f"{lib}-{dtype}-{spec.id}")
        for lib in LIBRARIES
        for dtype in ("float32", "float64", *HALF[lib])
        for spec in (specs if dtype in ("float32", "float64") else firsts)
    ]


def check_library(spec: Spec, lib: str, dtype: str, factor: float = 8.0) -> None:
    """Result type, device, shape, dtype and values (against the reference of
    the values the inputs hold) for every reduction."""
    arrays = spec.arrays()
    inputs = {k: lib_array(lib, v, dtype) for k, v in arrays.items()}
    held = {k: (as_float64(x) if arrays[k].dtype.kind == "f" else arrays[k]) for k, x in inputs.items()}
    for reduction in spec.reductions:
        result = spec.call(inputs, reduction)
        expected = spec.expected(held, reduction)
        assert isinstance(result, array_type(lib)), type(result)
        assert_same_device(lib, result, next(iter(inputs.values())))
        assert tuple(result.shape) == expected.shape
        assert result.dtype == native_dtype(lib, dtype)
        # MLX computes exp and log in float64 only to float32 accuracy (on the CPU).
        tol = "float32" if (lib, dtype) == ("mlx", "float64") else dtype
        assert_close(as_float64(result), expected, tol, factor=factor)


def check_fast_equals_portable(spec: Spec, lib: str, arrays: dict[str, np.ndarray], reductions=None) -> None:
    """The library's fast path gives the portable code's float32 values (for
    ``reductions``, by default the loss's default one)."""
    inputs = {k: to_lib(lib, v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    if reductions is None:
        default = inspect.signature(spec.func).parameters.get("reduction")
        reductions = (None if default is None else default.default,)
    for reduction in reductions:
        fast = spec.call(inputs, reduction)
        with _native.portable():
            portable = spec.call(inputs, reduction)
        assert fast.dtype == portable.dtype and tuple(fast.shape) == tuple(portable.shape)
        assert_close(as_float64(fast), as_float64(portable), "float32", factor=4)


# ----------------------------------------------------------------------- autodiff


def cotangent(spec: Spec) -> np.ndarray:
    """Random weights for the unreduced loss (whole Jacobians through a scalar)."""
    shape = spec.expected(spec.arrays(), spec.reductions[0]).shape
    return np.random.default_rng(1000 + spec.seed).uniform(0.5, 1.5, size=shape)


def numeric_grad(spec: Spec, arrays: dict, name: str, weights, h: float = 1e-6) -> np.ndarray:
    """The gradient of ``sum(weights * loss)`` with respect to ``name``, by
    central differences of the float64 reference (steps relative to each
    entry's magnitude)."""

    def objective(**kw):
        return float(np.sum(weights * spec.reference(**kw, **spec.params)))

    x = arrays[name].astype(np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        step = h * max(1.0, abs(float(x[idx])))
        up, down = x.copy(), x.copy()
        up[idx] += step
        down[idx] -= step
        grad[idx] = (objective(**{**arrays, name: up}) - objective(**{**arrays, name: down})) / (2 * step)
    return grad


def check_torch_gradcheck(spec: Spec) -> None:
    import torch

    arrays = spec.arrays()
    names = spec.differentiable()
    order = list(arrays)
    tensors = [torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order]
    for reduction in spec.reductions[:2]:

        def f(*xs, reduction=reduction):
            return spec.call(dict(zip(order, xs)), reduction)

        assert torch.autograd.gradcheck(f, tuple(tensors), eps=1e-6, atol=1e-7, rtol=1e-5)


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def check_jax_grad_and_jit(spec: Spec) -> None:
    """``jax.grad`` gives the central differences of the reference; ``jax.jit``
    of the loss and of its gradient give the eager values."""
    jax = _jax()
    arrays = spec.arrays()
    names = spec.differentiable()
    weights = cotangent(spec)
    inputs = {k: to_lib("jax", v) for k, v in arrays.items()}
    ct = to_lib("jax", weights)
    reduction = spec.reductions[0]

    def objective(*xs):
        return (spec.call({**inputs, **dict(zip(names, xs))}, reduction) * ct).sum()

    argnums = tuple(range(len(names)))
    args = [inputs[k] for k in names]
    grads = jax.grad(objective, argnums=argnums)(*args)
    jit_grads = jax.jit(jax.grad(objective, argnums=argnums))(*args)
    for name, g, jg in zip(names, grads, jit_grads):
        assert g.dtype == jg.dtype == inputs[name].dtype
        np.testing.assert_allclose(np.asarray(g), numeric_grad(spec, arrays, name, weights), rtol=1e-6, atol=1e-7)
        assert_close(np.asarray(jg), np.asarray(g), "float64")
    r = spec.reductions[-1]
    jitted = jax.jit(lambda *xs: spec.call(dict(zip(arrays, xs)), r))(*inputs.values())
    assert_close(np.asarray(jitted), spec.expected(arrays, r), "float64")


def check_mlx_grad_and_compile(spec: Spec) -> None:
    """``mx.grad`` gives the numeric gradient (to float32); ``mx.compile`` of
    the loss and of its gradient give the eager values."""
    import mlx.core as mx

    arrays = spec.arrays()
    names = spec.differentiable()
    order = list(arrays)
    xs = [mx.array(arrays[k].astype(np.float32) if arrays[k].dtype.kind == "f" else arrays[k]) for k in order]
    held = {k: (np.array(x).astype(np.float64) if k in names else arrays[k]) for k, x in zip(order, xs)}
    reduction = "mean" if spec.reductions[0] is not None else None

    def loss(*a):
        return spec.call(dict(zip(order, a)), reduction)

    argnums = [order.index(k) for k in names]
    value, grads = mx.value_and_grad(loss, argnums=argnums)(*xs)
    grads = (grads,) if isinstance(grads, mx.array) else tuple(grads)
    assert_close(np.array(value), spec.expected(held, reduction), "float32", factor=8)
    n = spec.expected(held, spec.reductions[0]).size
    for k, g in zip(names, grads):
        assert g.dtype == mx.float32 and tuple(g.shape) == arrays[k].shape
        want = numeric_grad(spec, held, k, np.full(spec.expected(held, spec.reductions[0]).shape, 1.0 / n))
        assert_close(np.array(g), want, "float32", factor=50)
    compiled = mx.compile(loss)
    assert_close(np.array(compiled(*xs)), np.array(loss(*xs)), "float32")
    compiled_grads = mx.compile(mx.grad(loss, argnums=argnums))(*xs)
    compiled_grads = (compiled_grads,) if isinstance(compiled_grads, mx.array) else tuple(compiled_grads)
    for g, c in zip(grads, compiled_grads):
        assert_close(np.array(c), np.array(g), "float32")


def check_mlx_grad(case: Case) -> None:
    """``mx.value_and_grad`` and ``mx.grad`` of the 'mean' in float32 give the
    float64 reference and its central differences."""
    import mlx.core as mx

    arrays = case.arrays()
    names = case.differentiable()
    inputs = {k: mx.array(v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}
    argnums = list(range(len(names)))

    def objective(*xs):
        return case.call({**inputs, **dict(zip(names, xs))}, "mean")

    value, grads = mx.value_and_grad(objective, argnums=argnums)(*(inputs[k] for k in names))
    grad_only = mx.grad(objective, argnums=argnums)(*(inputs[k] for k in names))
    held = {k: (np.array(x).astype(np.float64) if k in names else arrays[k]) for k, x in inputs.items()}
    assert_close(np.array(value), case.expected(held, "mean"), "float32", factor=4)
    shape = case.expected(held, "none").shape
    grads = (grads,) if isinstance(grads, mx.array) else tuple(grads)
    grad_only = (grad_only,) if isinstance(grad_only, mx.array) else tuple(grad_only)
    for name, g, g2 in zip(names, grads, grad_only):
        assert g.dtype == mx.float32 and tuple(g.shape) == arrays[name].shape
        np.testing.assert_array_equal(np.array(g), np.array(g2))
        want = numeric_grad(case, held, name, np.full(shape, 1.0 / math.prod(shape)))
        assert_close(np.array(g), want, "float32", factor=50)


def check_torch_compile(spec: Spec) -> None:
    """``torch.compile(fullgraph=True)`` (aot_eager: Dynamo's capture and
    AOTAutograd's joint graph) gives the eager values and gradients."""
    import torch

    torch._dynamo.reset()
    arrays = spec.arrays()
    names = spec.differentiable()
    order = list(arrays)
    reduction = "mean" if spec.reductions[0] is not None else None

    def f(*xs):
        return spec.call(dict(zip(order, xs)), reduction)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
        comp_in = [torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order]
        got = compiled(*comp_in)
        got.backward()
    eager_in = [torch.from_numpy(arrays[k].copy()).requires_grad_(k in names) for k in order]
    want = f(*eager_in)
    want.backward()
    assert got.dtype == want.dtype == torch.float64
    assert_close(got.item(), spec.expected(arrays, reduction), "float64")
    for a, b, k in zip(comp_in, eager_in, order):
        if k in names:
            assert_close(to_numpy(a.grad), to_numpy(b.grad), "float64")


# ------------------------------------------------------------------ hard inputs

# The libraries each float dtype runs on (as in test_hard_cases.py): MLX
# evaluates exp and log of float64 arrays to float32 accuracy only.
LIBRARIES_BY_DTYPE = {
    "float16": ("numpy", "torch", "jax", "mlx", "dask"),
    "bfloat16": ("torch", "jax", "mlx"),
    "float32": ("numpy", "array_api_strict", "torch", "jax", "mlx", "dask"),
    "float64": ("numpy", "array_api_strict", "torch", "jax", "dask"),
}


def run_everywhere(func: Callable[..., Any], arrays: dict[str, np.ndarray], dtype: str, libs=None, **params):
    """``func`` on every library that has ``dtype`` (floating arrays in it),
    through the fast path and the portable code: ``{(lib, path): result}``."""
    libs = libs or LIBRARIES_BY_DTYPE[dtype]
    results = {}
    for lib in libs:
        inputs = {k: lib_array(lib, v, dtype) for k, v in arrays.items()}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            results[lib, "fast"] = as_float64(func(**inputs, **params))
            with _native.portable():
                results[lib, "portable"] = as_float64(func(**inputs, **params))
    return results
