"""Hard inputs with high-precision expected values.

Each case is an input where a direct evaluation of the formula loses the
answer: a tiny loss lost to cancellation, a ``0 * log 0``, an intermediate
product or square that overflows although the loss does not, a half-precision
input whose squares or sums overflow the half type.  The expected value is
computed with mpmath (``tests/mp_reference.py``, 60 digits) from the exact
input values after rounding to the case's dtype, and a result is right when
it is within a few units in the last place of that dtype:

    |got - exact| <= ULPS * eps(dtype) * |exact| + ULPS * smallest_subnormal(dtype)

The cases run on every library that has the dtype (bfloat16 on PyTorch, JAX
and MLX only), so a native fast path must keep the accuracy of the portable
code.  ``benchmarks/accuracy.py`` scores MLX and PyTorch on the same cases.

The gradient cases check torch autograd and ``jax.grad`` against derivatives
worked out by hand from the formula and evaluated with mpmath, at the points
where a naive formula gives NaN or infinity: zero distances, zero vectors,
zero-probability classes, probabilities of exactly 0 and 1, logit 0.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable

import mpmath as mp
import numpy as np
import pytest

import mp_reference
from backends import to_lib, to_numpy

import anyloss
from anyloss import _native

# Extreme inputs make NumPy warn about overflow in intermediate (unused) values.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

ULPS = 4
# MLX's own exp and log1p in float32 are off by up to about 10 ulps.
MLX_ULPS = 16
INF = math.inf
F32_MAX = float(np.finfo(np.float32).max)

# The libraries each float dtype runs on.
LIBRARIES_BY_DTYPE = {
    "float16": ("numpy", "torch", "jax", "mlx", "dask"),
    "bfloat16": ("torch", "jax", "mlx"),
    "float32": ("numpy", "array_api_strict", "torch", "jax", "mlx", "dask"),
    # MLX evaluates exp and log of float64 arrays to float32 accuracy only.
    "float64": ("numpy", "array_api_strict", "torch", "jax", "dask"),
}


@dataclasses.dataclass
class Case:
    """One hard input.

    ``arrays`` maps argument names to NumPy arrays: floating arrays are given
    in float64 and rounded to ``dtype`` (for bfloat16, to the nearest bfloat16
    value, kept in a float32 array); integer arrays (class indices, ±1
    labels) are passed as they are.  ``params`` are the scalar arguments.
    """

    id: str
    loss: str
    dtype: str
    arrays: dict[str, Any]
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    why: str = ""
    #: The arrays are tiled ``repeat`` times along their first axis (a mean or
    #: sum over a large array of equal rows; the reference needs only one row).
    repeat: int = 1
    #: Libraries left out of this case, with the reason.
    exclude: dict[str, str] = dataclasses.field(default_factory=dict)
    #: Libraries whose fast path gives way to the library's own kernel here:
    #: a loss far below eps may lose its relative precision, never more than
    #: a few ulps of 1 in absolute terms (listed in the differences page).
    native_rounding: tuple[str, ...] = ()


def _f(*values) -> np.ndarray:
    return np.array(values, dtype=np.float64)


def _i(*values) -> np.ndarray:
    return np.array(values, dtype=np.int64)


CASES = [
    # ---- tiny losses lost to cancellation
    Case("bce-logit-20-target-1", "binary_cross_entropy", "float32",
         {"inputs": _f(20.0), "targets": _f(1.0)}, {"reduction": "none"},
         "log(1 + e^-20) = 2.06e-9, lost as logaddexp(0, 20) - 20"),
    Case("bce-logit-minus-20-target-0", "binary_cross_entropy", "float32",
         {"inputs": _f(-20.0), "targets": _f(0.0)}, {"reduction": "none"}),
    Case("bce-logit-40-float64", "binary_cross_entropy", "float64",
         {"inputs": _f(40.0), "targets": _f(1.0)}, {"reduction": "none"}),
    Case("bce-logit-8-float16", "binary_cross_entropy", "float16",
         {"inputs": _f(8.0), "targets": _f(1.0)}, {"reduction": "none"}),
    Case("bce-logit-20-bfloat16", "binary_cross_entropy", "bfloat16",
         {"inputs": _f(20.0), "targets": _f(1.0)}, {"reduction": "none"}),
    Case("bce-logit-mean-confident", "binary_cross_entropy", "float32",
         {"inputs": _f(25.0, -30.0, 18.0), "targets": _f(1.0, 0.0, 1.0)}, {"reduction": "mean"},
         native_rounding=("torch",)),
    Case("bce-prob-1e-10-target-0", "binary_cross_entropy", "float32",
         {"inputs": _f(1e-10), "targets": _f(0.0)}, {"with_logits": False, "reduction": "none"},
         "-log(1 - p) = p for tiny p, lost as log(1 - 1e-10) = log(1)"),
    Case("bce-prob-1e-20-target-0-float64", "binary_cross_entropy", "float64",
         {"inputs": _f(1e-20), "targets": _f(0.0)}, {"with_logits": False, "reduction": "none"}),
    Case("bce-prob-exact-0-and-1", "binary_cross_entropy", "float32",
         {"inputs": _f(0.0, 1.0, 0.0, 1.0), "targets": _f(0.0, 1.0, 1.0, 0.0)},
         {"with_logits": False, "reduction": "none"}, "0, 0 and the clip at -100"),
    Case("log-cosh-1e-4", "log_cosh_loss", "float32",
         {"inputs": _f(1e-4), "targets": _f(0.0)}, {},
         "log cosh a = a^2/2 = 5e-9, lost as log(cosh(1e-4)) = log(1)"),
    Case("log-cosh-1e-20-float64", "log_cosh_loss", "float64",
         {"inputs": _f(1e-20), "targets": _f(0.0)}, {}),
    Case("log-cosh-small-bfloat16", "log_cosh_loss", "bfloat16",
         {"inputs": _f(0.01, -0.003), "targets": _f(0.0, 0.0)}, {}),
    Case("log-cosh-small-float16", "log_cosh_loss", "float16",
         {"inputs": _f(0.01, 0.02), "targets": _f(0.0, -0.001)}, {}),
    Case("ce-confident-correct", "cross_entropy", "float32",
         {"logits": _f(30.0, 0.0).reshape(1, 2), "targets": _i(0)}, {},
         "logsumexp(x) - x_y = log(1 + e^-30) = 9.4e-14",
         native_rounding=("jax",)),
    Case("ce-confident-correct-3-classes-float64", "cross_entropy", "float64",
         {"logits": _f(0.0, 50.0, -10.0).reshape(1, 3), "targets": _i(1)}, {},
         native_rounding=("jax",)),
    Case("ce-confident-correct-float16", "cross_entropy", "float16",
         {"logits": _f(12.0, 0.0, 1.0).reshape(1, 3), "targets": _i(0)}, {}),
    Case("ce-confident-correct-bfloat16", "cross_entropy", "bfloat16",
         {"logits": _f(20.0, 0.0).reshape(1, 2), "targets": _i(0)}, {},
         native_rounding=("jax",)),
    Case("ce-confident-probabilities", "cross_entropy", "float32",
         {"logits": _f(30.0, 0.0).reshape(1, 2), "targets": _f(1.0, 0.0).reshape(1, 2)}, {},
         native_rounding=("jax",)),
    Case("ce-smoothing-huge-logit-range", "cross_entropy", "float32",
         {"logits": _f(0.0, 0.0, 2.0**126, -(2.0**126)).reshape(1, 4), "targets": _i(0)},
         {"label_smoothing": 0.1},
         "the mean of the shifted logits is -2^126, but their sum overflows to -inf"),
    # ---- 0 * log 0
    Case("kl-target-minus-inf", "kl_div_loss", "float32",
         {"inputs": _f(-1.0, -0.5).reshape(1, 2), "targets": _f(-INF, 0.0).reshape(1, 2)}, {},
         "exp(-inf) * (-inf - x) is 0, not nan"),
    Case("kl-both-minus-inf", "kl_div_loss", "float64",
         {"inputs": _f(-INF, -2.0, -0.1).reshape(1, 3),
          "targets": _f(-INF, math.log(0.5), math.log(0.5)).reshape(1, 3)}, {}),
    Case("kl-minus-inf-float16", "kl_div_loss", "float16",
         {"inputs": _f(-2.0, -0.2).reshape(1, 2), "targets": _f(-INF, 0.0).reshape(1, 2)}, {}),
    Case("ce-prob-minus-inf-logit", "cross_entropy", "float32",
         {"logits": _f(-INF, 0.0).reshape(1, 2), "targets": _f(0.0, 1.0).reshape(1, 2)}, {},
         "a class of probability 0 with logit -inf contributes 0"),
    Case("ce-prob-minus-inf-logit-3-classes", "cross_entropy", "float64",
         {"logits": _f(1.0, -INF, 2.0).reshape(1, 3), "targets": _f(0.5, 0.0, 0.5).reshape(1, 3)}, {}),
    Case("bce-logit-infinite", "binary_cross_entropy", "float32",
         {"inputs": _f(-INF, INF), "targets": _f(0.0, 1.0)}, {"reduction": "none"},
         "0 * inf in t * x"),
    # ---- overflow in intermediate products and squares
    Case("cosine-norms-1e20", "cosine_similarity_loss", "float32",
         {"x1": _f(1e20, 2e20).reshape(1, 2), "x2": _f(3e20, -1e20).reshape(1, 2)}, {},
         "the product of the norms, 1e40, overflows float32"),
    Case("cosine-norms-1e200-float64", "cosine_similarity_loss", "float64",
         {"x1": _f(1e200, 1e200).reshape(1, 2), "x2": _f(1e200, -2e200).reshape(1, 2)}, {}),
    Case("cosine-float16-300-400", "cosine_similarity_loss", "float16",
         {"x1": _f(300.0, 400.0).reshape(1, 2), "x2": _f(400.0, 300.0).reshape(1, 2)}, {},
         "300^2 + 400^2 overflows float16"),
    Case("cosine-subnormal-eps-0", "cosine_similarity_loss", "float32",
         {"x1": _f(1e-40, 2e-40).reshape(1, 2), "x2": _f(2e-40, 1e-40).reshape(1, 2)}, {"eps": 0.0},
         "the squares underflow to 0",
         exclude={"jax": "XLA on the CPU flushes subnormal inputs to zero"}),
    Case("cosine-zero-vector", "cosine_similarity_loss", "float32",
         {"x1": _f(0.0, 0.0).reshape(1, 2), "x2": _f(1.0, 2.0).reshape(1, 2)}, {}),
    Case("triplet-1e20", "triplet_loss", "float32",
         {"anchors": _f(0.0, 0.0).reshape(1, 2), "positives": _f(0.0, 2e20).reshape(1, 2),
          "negatives": _f(1e20, 0.0).reshape(1, 2)}, {"eps": 0.0},
         "the squared distances overflow float32"),
    Case("triplet-1e20-zero-loss", "triplet_loss", "float32",
         {"anchors": _f(1e20, 0.0).reshape(1, 2), "positives": _f(0.0, 0.0).reshape(1, 2),
          "negatives": _f(0.0, 1e20).reshape(1, 2)}, {"eps": 0.0}),
    Case("triplet-p3-1e15", "triplet_loss", "float32",
         {"anchors": _f(0.0, 0.0).reshape(1, 2), "positives": _f(0.0, 2e15).reshape(1, 2),
          "negatives": _f(1e15, 0.0).reshape(1, 2)}, {"p": 3, "eps": 0.0}),
    Case("triplet-float16-400", "triplet_loss", "float16",
         {"anchors": _f(0.0, 0.0).reshape(1, 2), "positives": _f(300.0, 400.0).reshape(1, 2),
          "negatives": _f(30.0, 40.0).reshape(1, 2)}, {"eps": 0.0},
         "400^2 overflows float16"),
    Case("triplet-tiny-distances", "triplet_loss", "float32",
         {"anchors": _f(0.0, 0.0).reshape(1, 2), "positives": _f(3e-30, 4e-30).reshape(1, 2),
          "negatives": _f(0.0, 1e-30).reshape(1, 2)}, {"eps": 0.0, "margin": 1e-30},
         "the squared distances underflow float32"),
    Case("gaussian-residual-2e20", "gaussian_nll_loss", "float32",
         {"inputs": _f(1e20), "targets": _f(-1e20), "vars": _f(1e30)}, {"reduction": "none"},
         "the squared residual, 4e40, overflows float32"),
    Case("gaussian-loss-near-float32-max", "gaussian_nll_loss", "float32",
         {"inputs": _f(1.5e37), "targets": _f(-2.1e37), "vars": _f(3.8e36)}, {"reduction": "none"},
         "the loss, 1.7e38, is finite; twice it is not"),
    Case("gaussian-float16-residual-300", "gaussian_nll_loss", "float16",
         {"inputs": _f(300.0), "targets": _f(0.0), "vars": _f(1.0)}, {"reduction": "none"},
         "300^2 overflows float16; the loss, 45000, does not"),
    Case("gaussian-bfloat16-residual-1e20", "gaussian_nll_loss", "bfloat16",
         {"inputs": _f(1e20), "targets": _f(0.0), "vars": _f(1e25)}, {"reduction": "none"}),
    Case("smooth-l1-float16-300", "smooth_l1_loss", "float16",
         {"predictions": _f(300.0), "targets": _f(0.0)}, {"beta": 1000.0, "reduction": "none"}),
    Case("smooth-l1-large-beta", "smooth_l1_loss", "float32",
         {"predictions": _f(1e20), "targets": _f(0.0)}, {"beta": 1e30, "reduction": "none"}),
    Case("huber-float16-300", "huber_loss", "float16",
         {"inputs": _f(300.0), "targets": _f(0.0)}, {"delta": 1000.0}),
    Case("mse-float16-square-overflow", "mse_loss", "float16",
         {"predictions": _f(250.0, -200.0), "targets": _f(0.0, 50.0)}, {"reduction": "none"},
         "250^2 = 62500 is just below the float16 maximum"),
    # ---- means and sums of large half-precision arrays
    Case("mse-mean-200000-float16", "mse_loss", "float16",
         {"predictions": _f(1.0), "targets": _f(0.0)}, {},
         "the float16 sum of 200,000 ones overflows", repeat=200_000),
    Case("mse-mean-bfloat16", "mse_loss", "bfloat16",
         {"predictions": _f(3.0), "targets": _f(0.0)}, {},
         "a bfloat16 running sum of 9s would stop growing at 2^11", repeat=100_000),
    Case("mse-mean-float16-40000", "mse_loss", "float16",
         {"predictions": _f(200.0), "targets": _f(0.0)}, {}, repeat=10),
    Case("l1-mean-float16", "l1_loss", "float16",
         {"predictions": _f(1000.0), "targets": _f(0.0)}, {}, repeat=100_000),
    Case("l1-sum-bfloat16", "l1_loss", "bfloat16",
         {"predictions": _f(0.5), "targets": _f(0.0)}, {"reduction": "sum"}, repeat=4096),
    Case("nll-mean-float16", "nll_loss", "float16",
         {"inputs": _f(-60000.0, -1.0).reshape(1, 2), "targets": _i(0)}, {"reduction": "mean"},
         repeat=50_000),
    Case("hinge-mean-float16", "hinge_loss", "float16",
         {"inputs": _f(999.0), "targets": _i(-1)}, {"reduction": "mean"}, repeat=100_000),
    Case("margin-ranking-mean-float16", "margin_ranking_loss", "float16",
         {"inputs1": _f(-500.0), "inputs2": _f(500.0), "targets": _i(1)}, {"reduction": "mean"},
         repeat=100_000),
    Case("ce-mean-float16", "cross_entropy", "float16",
         {"logits": _f(0.0, 1000.0).reshape(1, 2), "targets": _i(0)}, {"reduction": "mean"},
         repeat=100_000),
    Case("bce-sum-float16", "binary_cross_entropy", "float16",
         {"inputs": _f(-20.0), "targets": _f(1.0)}, {"reduction": "sum"},
         "the sum, 2e6, exceeds float16: inf is the right float16 answer", repeat=100_000),
    Case("huber-mean-bfloat16", "huber_loss", "bfloat16",
         {"inputs": _f(0.25), "targets": _f(0.0)}, {"reduction": "mean"}, repeat=65_536),
    # ---- large values at the edge of float32
    Case("margin-ranking-f32-max", "margin_ranking_loss", "float32",
         {"inputs1": _f(F32_MAX), "inputs2": _f(-F32_MAX), "targets": _i(1)}, {},
         "x1 - x2 overflows, but -y (x1 - x2) is far below 0"),
    Case("l1-huge-no-overflow", "l1_loss", "float32",
         {"predictions": _f(F32_MAX, 1e38), "targets": _f(F32_MAX / 2, -1e38)}, {"reduction": "none"}),
]

CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "case ids must be unique"


# ----------------------------------------------------------------------- machinery


def bfloat16_round(a: np.ndarray) -> np.ndarray:
    """``a`` rounded to the nearest bfloat16 value (ties to even), as float32."""
    bits = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    special = ~np.isfinite(np.asarray(a, dtype=np.float32))
    out = rounded.astype(np.uint32).view(np.float32)
    return np.where(special, np.asarray(a, dtype=np.float32), out)


def case_inputs(case: Case, tiled: bool = True) -> dict[str, np.ndarray]:
    """The case's arrays rounded to its dtype (bfloat16 values held in float32)."""
    out = {}
    for name, a in case.arrays.items():
        a = np.asarray(a)
        if a.dtype.kind == "f":
            a = bfloat16_round(a) if case.dtype == "bfloat16" else a.astype(case.dtype)
        if tiled and case.repeat > 1:
            a = np.tile(a, (case.repeat,) + (1,) * (a.ndim - 1))
        out[name] = a
    return out


def case_expected(case: Case):
    """The exact loss of the rounded inputs (mpf or object array of mpf).

    For a tiled case the mean equals the mean over one copy of the rows, and
    the sum is ``repeat`` times the sum over one copy.
    """
    value = getattr(mp_reference, case.loss)(**case_inputs(case, tiled=False), **case.params)
    if case.repeat > 1:
        reduction = case.params.get("reduction")
        assert reduction in ("mean", "sum") or reduction is None, case.id
        if reduction == "sum":
            value = value * case.repeat
    return value


def to_library(lib: str, a: np.ndarray, dtype: str):
    """``a`` as an array of ``lib``; floating arrays in ``dtype`` (bfloat16 included)."""
    if lib == "mlx":
        import mlx.core as mx

        mx_dtype = getattr(mx, dtype) if a.dtype.kind == "f" else getattr(mx, a.dtype.name)
        return mx.array(a, dtype=mx_dtype)
    if a.dtype.kind != "f" or dtype != "bfloat16":
        return to_lib(lib, a)
    if lib == "torch":
        import torch

        return torch.from_numpy(np.array(a, copy=True)).to(torch.bfloat16)
    if lib == "jax":
        import jax.numpy as jnp

        return jnp.asarray(a, dtype=jnp.bfloat16)
    raise ValueError(f"{lib} has no bfloat16")


def result_to_float64(x) -> np.ndarray:
    module = type(x).__module__.split(".")[0]
    if module == "torch":
        import torch

        if x.dtype == torch.bfloat16:
            x = x.float()
    if module in ("jax", "jaxlib") and str(x.dtype) == "bfloat16":
        x = x.astype("float32")
    return np.asarray(to_numpy(x), dtype=np.float64)


def result_dtype_name(x) -> str:
    return str(x.dtype).rsplit(".", 1)[-1]


def within_precision(
    got: np.ndarray, expected, dtype: str, ulps: float = ULPS, scale: float = 0.0
) -> tuple[bool, str]:
    """Whether every element of ``got`` is within ``ulps`` units of ``dtype`` of
    ``expected`` (of ``scale``, for values smaller than it).

    A float result of an exact value that overflows the dtype must be ``inf``
    of the same sign; a finite exact value needs a finite result.
    """
    info = {
        "float16": (2.0**-10, 2.0**-24, 65504.0),
        "bfloat16": (2.0**-7, 2.0**-133, float(np.finfo(np.float32).max)),
        "float32": (2.0**-23, 2.0**-149, float(np.finfo(np.float32).max)),
        "float64": (2.0**-52, 2.0**-1074, float(np.finfo(np.float64).max)),
    }[dtype]
    eps, tiny, largest = info
    got = np.asarray(got, dtype=np.float64)
    exp_arr = np.asarray(expected, dtype=object)
    if got.shape != exp_arr.shape:
        return False, f"shape {got.shape}, expected {exp_arr.shape}"
    with mp.workdps(mp_reference.DPS):
        for idx in np.ndindex(got.shape):
            g, e = got[idx], exp_arr[idx]
            if mp.isnan(e):
                raise AssertionError("a hard case must have a defined exact value")
            # Values beyond the largest finite number (plus half an ulp) round to inf.
            if abs(e) > largest * (1 + eps / 2):
                if not (math.isinf(g) and (g > 0) == (e > 0)):
                    return False, f"at {idx}: got {g!r}, exact {mp.nstr(e, 12)} overflows to inf"
                continue
            if not math.isfinite(g):
                return False, f"at {idx}: got {g!r}, exact {mp.nstr(e, 12)}"
            err = abs(mp.mpf(g) - e)
            tol = ulps * (eps * max(abs(e), scale) + tiny)
            if err > tol:
                return False, (
                    f"at {idx}: got {g!r}, exact {mp.nstr(e, 12)} "
                    f"(error {mp.nstr(err / max(abs(e), tiny) / eps, 3)} ulps)"
                )
    return True, ""


def run_anyloss(case: Case, lib: str):
    """The case on library ``lib``; on JAX under ``jax.jit`` (one compilation
    per case instead of one per operation, and the way JAX code runs)."""
    inputs = {k: to_library(lib, v, case.dtype) for k, v in case_inputs(case).items()}
    loss = getattr(anyloss, case.loss)
    if lib == "jax":
        import jax

        return jax.jit(lambda kw: loss(**kw, **case.params))(inputs)
    return loss(**inputs, **case.params)


# --------------------------------------------------------------------------- tests

_EXPECTED: dict[str, Any] = {}


def _expected(case: Case):
    if case.id not in _EXPECTED:
        _EXPECTED[case.id] = case_expected(case)
    return _EXPECTED[case.id]


# Libraries with fast paths run each case twice: through the fast path and
# through the portable reference code (``_native.portable()``).
_FAST = ("numpy", "torch", "jax", "mlx")
_PARAMS = [
    pytest.param(case, lib, path, id=f"{case.id}-{lib}" + ("-portable" if path == "portable" else ""))
    for case in CASES
    for lib in LIBRARIES_BY_DTYPE[case.dtype]
    if lib not in case.exclude
    for path in (("fast", "portable") if lib in _FAST else ("fast",))
]


def _path(path: str):
    return _native.portable() if path == "portable" else contextlib.nullcontext()


@pytest.mark.parametrize(("case", "lib", "path"), _PARAMS)
def test_hard_case(case: Case, lib: str, path: str):
    with _path(path):
        result = run_anyloss(case, lib)
    out_dtype = result_dtype_name(result)
    assert out_dtype == case.dtype, f"{case.id} on {lib}: result dtype {out_dtype}, expected {case.dtype}"
    ulps = MLX_ULPS if lib == "mlx" else ULPS
    scale = 1.0 if path == "fast" and lib in case.native_rounding else 0.0
    ok, why = within_precision(result_to_float64(result), _expected(case), case.dtype, ulps, scale)
    assert ok, f"{case.id} on {lib}: {why}"


def test_case_list_covers_every_loss_and_dtype():
    kinds = {case.loss for case in CASES}
    assert len(kinds) == 14, sorted(kinds)
    assert {case.dtype for case in CASES} == {"float16", "bfloat16", "float32", "float64"}


# ---------------------------------------------------------------------- gradients


@dataclasses.dataclass
class GradCase:
    """A point where the gradient is easy to get wrong.

    ``wrt`` names the argument differentiated; ``grad`` maps the exact inputs
    (object arrays of mpf) to the exact gradient of the summed loss.
    """

    id: str
    loss: str
    dtype: str
    arrays: dict[str, np.ndarray]
    params: dict[str, Any]
    wrt: str
    grad: Callable[..., np.ndarray]


def _sigmoid(x):
    return 1 / (1 + mp.exp(-x)) if x != mp.ninf else mp.mpf(0)


def _grad_bce_logits(inputs, targets, **_):
    return np.vectorize(lambda x, t: _sigmoid(x) - t, otypes=[object])(inputs, targets)


def _grad_bce_logits_targets(inputs, targets, **_):
    # d/dt of (1 - t) x + log(1 + e^-x) (or -t x + log(1 + e^x)) is -x.
    return np.vectorize(lambda x, t: -x, otypes=[object])(inputs, targets)


def _grad_bce_probs(inputs, targets, **_):
    # d/dp of -(t max(log p, -100) + (1 - t) max(log(1 - p), -100)); a clipped
    # logarithm is constant, so it adds nothing.
    def one(p, t):
        g = mp.mpf(0)
        if p > mp.exp(-100):
            g -= t / p
        if 1 - p > mp.exp(-100):
            g += (1 - t) / (1 - p)
        return g

    return np.vectorize(one, otypes=[object])(inputs, targets)


def _grad_kl_inputs(inputs, targets, **_):
    return np.vectorize(lambda t: -mp.exp(t), otypes=[object])(targets)


def _grad_kl_targets(inputs, targets, **_):
    return np.vectorize(
        lambda x, t: mp.mpf(0) if t == mp.ninf else mp.exp(t) * (t - x + 1), otypes=[object]
    )(inputs, targets)


def _grad_ce_probs(logits, targets, **_):
    out = np.empty(logits.shape, dtype=object)
    for r in range(logits.shape[0]):
        m = max(logits[r])
        e = [mp.exp(v - m) for v in logits[r]]
        total = mp.fsum(e)
        for c in range(logits.shape[1]):
            out[r, c] = e[c] / total - targets[r, c]
    return out


def _grad_triplet_anchors(anchors, positives, negatives, eps=1e-6, **_):
    out = np.empty(anchors.shape, dtype=object)
    for r in range(anchors.shape[0]):
        dp = [a - p for a, p in zip(anchors[r], positives[r])]
        dn = [a - n for a, n in zip(anchors[r], negatives[r])]
        np_ = mp.sqrt(mp.fsum(v * v for v in dp) + eps)
        nn_ = mp.sqrt(mp.fsum(v * v for v in dn) + eps)
        for c in range(anchors.shape[1]):
            out[r, c] = dp[c] / np_ - dn[c] / nn_
    return out


def _grad_triplet_positives(anchors, positives, negatives, eps=1e-6, **_):
    out = np.empty(anchors.shape, dtype=object)
    for r in range(anchors.shape[0]):
        dp = [p - a for a, p in zip(anchors[r], positives[r])]
        np_ = mp.sqrt(mp.fsum(v * v for v in dp) + eps)
        for c in range(anchors.shape[1]):
            out[r, c] = dp[c] / np_
    return out


def _grad_cosine_x1(x1, x2, eps=1e-8, **_):
    out = np.empty(x1.shape, dtype=object)
    for r in range(x1.shape[0]):
        a, b = list(x1[r]), list(x2[r])
        na = mp.sqrt(mp.fsum(v * v for v in a))
        nb = mp.sqrt(mp.fsum(v * v for v in b))
        dot = mp.fsum(p * q for p, q in zip(a, b))
        for c in range(len(a)):
            if na * nb < eps:  # denominator eps: gradient of a . b / eps
                out[r, c] = b[c] / mp.mpf(eps)
            else:
                out[r, c] = b[c] / (na * nb) - dot * a[c] / (na**3 * nb)
    return out


def _grad_log_cosh(inputs, targets, **_):
    return np.vectorize(lambda x, y: mp.tanh(x - y), otypes=[object])(inputs, targets)


def _grad_gaussian_inputs(inputs, targets, vars, eps=1e-6, **_):
    return np.vectorize(lambda x, y, v: (x - y) / max(v, mp.mpf(eps)), otypes=[object])(
        inputs, targets, vars
    )


GRAD_CASES = [
    GradCase("bce-logits-at-0-20-inf", "binary_cross_entropy", "float32",
             {"inputs": _f(0.0, 20.0, -20.0, 0.0, -INF), "targets": _f(1.0, 1.0, 0.0, 0.5, 0.0)},
             {"reduction": "sum"}, "inputs", _grad_bce_logits),
    GradCase("bce-logits-wrt-matching-targets", "binary_cross_entropy", "float32",
             {"inputs": _f(5.0, -3.0, 0.0, 2.0), "targets": _f(1.0, 0.0, 1.0, 0.25)},
             {"reduction": "sum"}, "targets", _grad_bce_logits_targets),
    GradCase("bce-probs-at-0-and-1", "binary_cross_entropy", "float64",
             {"inputs": _f(0.0, 0.0, 1.0, 1.0, 0.5), "targets": _f(0.0, 1.0, 1.0, 0.0, 0.25)},
             {"with_logits": False, "reduction": "sum"}, "inputs", _grad_bce_probs),
    GradCase("kl-minus-inf-wrt-inputs", "kl_div_loss", "float32",
             {"inputs": _f(-1.0, -0.5, -INF, -0.1).reshape(2, 2),
              "targets": _f(-INF, 0.0, -INF, 0.0).reshape(2, 2)},
             {"reduction": "sum"}, "inputs", _grad_kl_inputs),
    GradCase("kl-minus-inf-wrt-targets", "kl_div_loss", "float64",
             {"inputs": _f(-1.0, -0.5, -INF, -0.1).reshape(2, 2),
              "targets": _f(-INF, 0.0, -INF, 0.0).reshape(2, 2)},
             {"reduction": "sum"}, "targets", _grad_kl_targets),
    GradCase("ce-prob-minus-inf-logit", "cross_entropy", "float64",
             {"logits": _f(-INF, 0.0, 1.0).reshape(1, 3), "targets": _f(0.0, 0.5, 0.5).reshape(1, 3)},
             {"reduction": "sum"}, "logits", _grad_ce_probs),
    GradCase("triplet-zero-distance-anchors", "triplet_loss", "float32",
             {"anchors": _f(1.0, 2.0).reshape(1, 2), "positives": _f(1.0, 2.0).reshape(1, 2),
              "negatives": _f(4.0, 6.0).reshape(1, 2)},
             {"margin": 10.0, "reduction": "sum"}, "anchors", _grad_triplet_anchors),
    GradCase("triplet-zero-distance-positives", "triplet_loss", "float64",
             {"anchors": _f(1.0, 2.0).reshape(1, 2), "positives": _f(1.0, 2.0).reshape(1, 2),
              "negatives": _f(4.0, 6.0).reshape(1, 2)},
             {"margin": 10.0, "reduction": "sum"}, "positives", _grad_triplet_positives),
    GradCase("triplet-1e20-positives", "triplet_loss", "float32",
             {"anchors": _f(0.0, 0.0).reshape(1, 2), "positives": _f(0.0, 2e20).reshape(1, 2),
              "negatives": _f(1e20, 0.0).reshape(1, 2)},
             {"reduction": "sum"}, "positives", _grad_triplet_positives),
    GradCase("cosine-zero-vector", "cosine_similarity_loss", "float64",
             {"x1": _f(0.0, 0.0, 0.0).reshape(1, 3), "x2": _f(1.0, 2.0, 3.0).reshape(1, 3)},
             {"reduction": "sum"}, "x1", _grad_cosine_x1),
    GradCase("cosine-norms-1e20", "cosine_similarity_loss", "float32",
             {"x1": _f(1e20, 2e20).reshape(1, 2), "x2": _f(3e20, -1e20).reshape(1, 2)},
             {"reduction": "sum"}, "x1", _grad_cosine_x1),
    GradCase("cosine-tiny-vector-below-eps", "cosine_similarity_loss", "float32",
             {"x1": _f(3e-23, 1e-23, -2e-23, 0.5, -1.0, 2.0).reshape(2, 3),
              "x2": _f(1.0, 2.0, 3.0, 1.0, 1.0, 1.0).reshape(2, 3)},
             {"reduction": "sum"}, "x1", _grad_cosine_x1),
    GradCase("cosine-tiny-vector-eps-0", "cosine_similarity_loss", "float32",
             {"x1": _f(3e-23, 1e-23, -2e-23).reshape(1, 3), "x2": _f(1.0, 2.0, 3.0).reshape(1, 3)},
             {"eps": 0.0, "reduction": "sum"}, "x1", _grad_cosine_x1),
    GradCase("log-cosh-tiny-and-zero", "log_cosh_loss", "float32",
             {"inputs": _f(1e-4, 0.0, 1e-30, 3.0), "targets": _f(0.0, 0.0, 0.0, 0.0)},
             {"reduction": "sum"}, "inputs", _grad_log_cosh),
    GradCase("gaussian-float16-residual-300", "gaussian_nll_loss", "float16",
             {"inputs": _f(300.0, 2.0), "targets": _f(0.0, 0.0), "vars": _f(1.0, 0.0)},
             {"eps": 0.01, "reduction": "sum"}, "inputs", _grad_gaussian_inputs),
]


def _grad_expected(case: GradCase) -> np.ndarray:
    inputs = {k: mp_reference._mp(v) for k, v in _rounded(case).items()}
    scalars = {k: v for k, v in case.params.items() if k in ("eps",)}
    with mp.workdps(mp_reference.DPS):
        return case.grad(**inputs, **scalars)


def _rounded(case: GradCase) -> dict[str, np.ndarray]:
    return case_inputs(Case(case.id, case.loss, case.dtype, case.arrays, case.params))


def _grad_torch(case: GradCase) -> np.ndarray:
    import torch

    inputs = {k: to_library("torch", v, case.dtype) for k, v in _rounded(case).items()}
    inputs[case.wrt] = inputs[case.wrt].clone().requires_grad_(True)
    loss = getattr(anyloss, case.loss)(**inputs, **case.params)
    (grad,) = torch.autograd.grad(loss, inputs[case.wrt])
    return result_to_float64(grad)


def _grad_jax(case: GradCase) -> np.ndarray:
    import jax

    inputs = {k: to_library("jax", v, case.dtype) for k, v in _rounded(case).items()}
    w = inputs.pop(case.wrt)

    def f(w, rest):
        return getattr(anyloss, case.loss)(**{**rest, case.wrt: w}, **case.params)

    # Every array is an argument of the compiled function, as in training.
    return result_to_float64(jax.jit(jax.grad(f))(w, inputs))


def _grad_mlx(case: GradCase) -> np.ndarray:
    import mlx.core as mx

    inputs = {k: to_library("mlx", v, case.dtype) for k, v in _rounded(case).items()}

    def f(w):
        return getattr(anyloss, case.loss)(**{**inputs, case.wrt: w}, **case.params)

    return result_to_float64(mx.grad(f)(inputs[case.wrt]))


GRADIENTS = {"torch": _grad_torch, "jax": _grad_jax, "mlx": _grad_mlx}


def gradient_right(got: np.ndarray, expected: np.ndarray, dtype: str) -> tuple[bool, str]:
    """Each component within a few ulps of the largest exact component
    (a norm-wise bound: the gradient as a vector is right to the dtype's
    precision); a finite exact gradient needs a finite result."""
    eps = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}[dtype]
    with mp.workdps(mp_reference.DPS):
        scale = max(abs(e) for e in expected.ravel())
        for idx in np.ndindex(expected.shape):
            g, e = got[idx], expected[idx]
            if not math.isfinite(g):
                return False, f"at {idx}: got {g!r}, exact {mp.nstr(e, 12)}"
            if abs(mp.mpf(g) - e) > ULPS * eps * (abs(e) + scale):
                return False, f"at {idx}: got {g!r}, exact {mp.nstr(e, 12)}"
    return True, ""


# MLX's float64 exp and log are float32-accurate (see LIBRARIES_BY_DTYPE).
_GRAD_PARAMS = [
    pytest.param(case, lib, id=f"{case.id}-{lib}")
    for case in GRAD_CASES
    for lib in sorted(GRADIENTS)
    if not (lib == "mlx" and case.dtype == "float64")
]


@pytest.mark.parametrize("path", ["fast", "portable"])
@pytest.mark.parametrize(("case", "lib"), _GRAD_PARAMS)
def test_gradient(case: GradCase, lib: str, path: str):
    with _path(path):
        got = GRADIENTS[lib](case)
    ok, why = gradient_right(got, _grad_expected(case), case.dtype)
    assert ok, f"gradient of {case.loss} wrt {case.wrt} ({case.id}) on {lib}: {why}"


# ------------------------------------------------------------ non-finite inputs

_INF_ROW = np.array([[1.0, np.inf, 2.0]], dtype=np.float32)
_NAN_ROW = np.array([[np.nan, 1.0, 2.0]], dtype=np.float32)
_ONES = np.ones((1, 3), dtype=np.float32)
_ZEROS = np.zeros((1, 3), dtype=np.float32)

# (loss, arrays, expected): a similarity lies in [-1, 1], so an infinite entry
# makes it undefined (NaN, as MLX and PyTorch give), never +-inf; a distance
# with an infinite entry is infinite, and inf - inf is undefined.
NON_FINITE = [
    ("cosine-inf-entry", "cosine_similarity_loss", (_INF_ROW, _ONES), math.nan),
    ("cosine-nan-entry", "cosine_similarity_loss", (_NAN_ROW, _ONES), math.nan),
    ("triplet-inf-anchor", "triplet_loss", (_INF_ROW, _ZEROS, _ZEROS), math.nan),
    ("triplet-inf-positive", "triplet_loss", (_ZEROS, _INF_ROW, _ZEROS), math.inf),
    ("triplet-inf-negative", "triplet_loss", (_ZEROS, _ZEROS, _INF_ROW), 0.0),
]


@pytest.mark.parametrize("path", ("fast", "portable"))
@pytest.mark.parametrize("lib", ("numpy", "torch", "jax", "mlx"))
@pytest.mark.parametrize(("name", "loss", "arrays", "expected"), NON_FINITE, ids=[c[0] for c in NON_FINITE])
def test_non_finite_input(name, loss, arrays, expected, lib, path):
    with _path(path):
        got = float(to_numpy(getattr(anyloss, loss)(*(to_lib(lib, a) for a in arrays)))[0])
    if math.isnan(expected):
        assert math.isnan(got), f"{name} on {lib}: got {got}, expected nan"
    else:
        assert got == expected, f"{name} on {lib}: got {got}, expected {expected}"
