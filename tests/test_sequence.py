"""ctc_loss.

A float64 reference written from Graves et al.'s forward recursion (itself
checked against the sum over every alignment, enumerated); the peers
(PyTorch's F.ctc_loss on log_softmax, optax.losses.ctc_loss) on random
inputs, values and gradients; every library, autodiff and tracing through
the shared matrix (``matrix_checks.py``); infeasible alignments, empty
targets, repeated labels, unread values under traces; bad arguments.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass

import numpy as np
import pytest

import matrix_checks as mx_
from backends import LIBRARIES, to_lib, to_numpy
from test_autodiff import numeric_grad
from test_bad_input import raises
from test_libraries import assert_close, reduce_ref

import anyloss
from anyloss import _native

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# ------------------------------------------------------------------ float64 references


def _log_softmax(x):
    z = x - np.max(x, axis=-1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=-1, keepdims=True))


def ref_ctc_loss(logits, targets, input_lengths, target_lengths, blank=0, zero_infinity=False):
    """Per sequence, ``-log`` of the forward variable summed over the last two
    extended positions, by Graves et al.'s recursion in log space, one
    sequence and one position at a time."""
    log_p = _log_softmax(np.asarray(logits, dtype=np.float64))
    losses = []
    for n in range(log_p.shape[0]):
        frames, length = int(input_lengths[n]), int(target_lengths[n])
        ext = [blank]
        for label in targets[n][:length]:
            ext += [int(label), blank]
        alpha = np.full(len(ext), -np.inf)
        if frames > 0:
            alpha[0] = log_p[n, 0, blank]
            if len(ext) > 1:
                alpha[1] = log_p[n, 0, ext[1]]
        for t in range(1, frames):
            new = np.full(len(ext), -np.inf)
            for s, label in enumerate(ext):
                terms = [alpha[s]]
                if s >= 1:
                    terms.append(alpha[s - 1])
                if s >= 2 and label != blank and label != ext[s - 2]:
                    terms.append(alpha[s - 2])
                new[s] = np.logaddexp.reduce(terms) + log_p[n, t, label]
            alpha = new
        if frames == 0:
            total = 0.0 if length == 0 else -np.inf
        else:
            total = np.logaddexp.reduce(alpha[-2:]) if length else alpha[-1]
        loss = -total
        losses.append(0.0 if zero_infinity and loss == np.inf else loss)
    return np.array(losses)


def ref_ctc_reduce(loss, target_lengths, reduction):
    """PyTorch's 'mean': each loss over its target length (at least 1), then the mean."""
    if reduction == "mean":
        return np.asarray(np.mean(loss / np.maximum(target_lengths, 1)))
    return reduce_ref(loss, reduction)


def brute_ctc_loss(logits, targets, input_lengths, target_lengths, blank=0):
    """``-log`` of the sum over every path of ``T_n`` classes that collapses
    (merge repeats, drop blanks) to the target: the definition, enumerated."""
    log_p = _log_softmax(np.asarray(logits, dtype=np.float64))
    out = []
    for n in range(log_p.shape[0]):
        frames, want = int(input_lengths[n]), [int(v) for v in targets[n][: int(target_lengths[n])]]
        total = -np.inf
        for path in itertools.product(range(log_p.shape[2]), repeat=frames):
            collapsed = [c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1])]
            if collapsed == want:
                total = np.logaddexp(total, sum(log_p[n, t, c] for t, c in enumerate(path)))
        out.append(-total)
    return np.array(out)


# ----------------------------------------------------------------------------- cases


def make_ctc(n, t, c, s, blank=0, repeats=False, empty=False, infeasible=False):
    """Logits and padded targets without the blank; lengths that every
    alignment fits (frames >= labels + repeated neighbours), with one empty
    target or one infeasible row on request.  The padding holds -1."""

    def make(rng):
        logits = rng.normal(scale=1.5, size=(n, t, c))
        others = [k for k in range(c) if k != blank]
        targets = rng.choice(others, size=(n, s))
        if repeats:
            targets[:, 1] = targets[:, 0]
        target_lengths = rng.integers(1, s + 1, size=n)
        target_lengths[0] = s
        if empty:
            target_lengths[-1] = 0
        need = [int(L) + int(np.sum(row[1:L] == row[: max(L - 1, 0)])) for row, L in zip(targets, target_lengths)]
        input_lengths = np.array([rng.integers(min(max(k, 1), t), t + 1) for k in need])
        input_lengths[0] = t
        if infeasible:
            input_lengths[1] = max(need[1] - 1, 0)
        targets = np.where(np.arange(s)[None] < target_lengths[:, None], targets, -1)
        return {
            "logits": logits, "targets": targets.astype(np.int64),
            "input_lengths": input_lengths.astype(np.int64), "target_lengths": target_lengths.astype(np.int64),
        }

    return make


@dataclass(frozen=True)
class CtcCase(mx_.Case):
    """A case whose 'mean' is PyTorch's: over the target lengths, then the batch."""

    def expected(self, arrays, reduction):
        loss = self.ref(**arrays, **self.params)
        return ref_ctc_reduce(loss, arrays["target_lengths"], reduction)


CASES = [
    CtcCase(i, "ctc_loss", make, params, seed=300 + k, ref=ref_ctc_loss)
    for k, (i, make, params) in enumerate([
        ("ctc-default", make_ctc(3, 6, 4, 3), {}),
        ("ctc-blank2-repeats", make_ctc(3, 7, 4, 3, blank=2, repeats=True), {"blank": 2}),
        ("ctc-empty-target", make_ctc(2, 5, 3, 2, empty=True), {}),
        ("ctc-infeasible-zero-infinity", make_ctc(3, 6, 3, 3, infeasible=True), {"zero_infinity": True}),
    ])
]
IDS = [c.id for c in CASES]
FIRSTS = CASES[:1]


def test_reference_is_the_sum_over_alignments():
    """The recursion of the reference against the enumerated definition."""
    for seed in range(6):
        make = make_ctc(3, 4, 3, 2, blank=seed % 3, repeats=seed % 2 == 1, empty=seed == 2, infeasible=seed == 4)
        arrays = make(np.random.default_rng(seed))
        blank = seed % 3
        np.testing.assert_allclose(
            ref_ctc_loss(**arrays, blank=blank), brute_ctc_loss(**arrays, blank=blank), rtol=1e-12
        )


# ------------------------------------------------------------ every library, autodiff


# Dask builds a graph of every step of the time loop: one case, one dtype.
# JAX compiles each configuration: two cases (the others run on JAX below).
VALUE_PARAMS = [
    p for p in mx_.value_params(CASES)
    if (p.values[0] != "dask" or (p.values[1] == "float64" and p.values[2] is CASES[0]))
    and (p.values[0] != "jax" or p.values[2] in (CASES[0], CASES[3]))
]
TWO = [CASES[0], CASES[3]]


@pytest.mark.parametrize("lib, dtype, case", VALUE_PARAMS)
def test_values_type_shape_dtype(lib, dtype, case):
    mx_.check_values(lib, dtype, case)


@pytest.mark.parametrize("lib", [lib for lib in LIBRARIES if lib not in ("numpy", "dask")])
def test_equals_numpy_float32(lib):
    mx_.check_equals_numpy(lib, CASES[1])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_torch_devices_and_gradcheck(case):
    mx_.check_torch_devices(case)
    mx_.check_torch_gradcheck(case)


@pytest.mark.parametrize("case", TWO, ids=[c.id for c in TWO])
def test_torch_backward(case):
    mx_.check_torch_backward(case)


def test_torch_compile():
    mx_.check_torch_compile(CASES[3])


@pytest.mark.parametrize("case", TWO, ids=[c.id for c in TWO])
def test_jax_grad_and_jit(case):
    mx_.check_jax_grad(case)
    mx_.check_jax_jit(case)


def test_jax_jit_static_argnames():
    mx_.check_jax_jit_static(CASES[1])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mlx_grad_and_compile(case):
    """``mx.value_and_grad`` against the reference and its central differences
    ('sum': the matrix's check assumes a plain mean), then ``mx.compile``."""
    import mlx.core as mx

    arrays = case.arrays()
    inputs = {k: mx.array(v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in arrays.items()}

    def objective(x):
        return case.func(**{**inputs, "logits": x}, **case.params, reduction="sum")

    value, grad = mx.value_and_grad(objective)(inputs["logits"])
    held = {**arrays, "logits": np.array(inputs["logits"]).astype(np.float64)}
    assert_close(np.array(value), case.expected(held, "sum"), "float32", factor=4)
    assert grad.dtype == mx.float32 and tuple(grad.shape) == arrays["logits"].shape
    want = numeric_grad(case, held, "logits", np.ones(arrays["logits"].shape[0]))
    assert_close(np.array(grad), want, "float32", factor=50)
    mx_.check_mlx_compile(case)


# ------------------------------------------------------------------------------ peers


def _random_call(rng, n, t, c, s):
    """Random sizes of everything, blank anywhere, repeats and empty targets
    likely, some rows infeasible (more labels than frames)."""
    blank = int(rng.integers(0, c))
    others = np.array([k for k in range(c) if k != blank])
    targets = others[rng.integers(0, len(others), size=(n, s))]
    target_lengths = rng.integers(0, s + 1, size=n)
    input_lengths = rng.integers(0, t + 1, size=n)
    input_lengths[0] = t
    return blank, targets, input_lengths, target_lengths


def _torch_ctc(x, targets, input_lengths, target_lengths, blank, reduction, zero_infinity):
    import torch
    import torch.nn.functional as F

    log_probs = torch.log_softmax(x, dim=-1).transpose(0, 1)
    return F.ctc_loss(
        log_probs, torch.from_numpy(targets), torch.from_numpy(input_lengths),
        torch.from_numpy(target_lengths), blank, reduction, zero_infinity,
    )


@pytest.mark.parametrize("seed", range(12))
def test_equals_torch_ctc_loss(seed):
    """Values for every reduction and zero_infinity, and the gradient wrt the
    logits of every feasible sequence, against F.ctc_loss in float64.  An
    infeasible sequence: inf (or 0) with gradient 0 (F.ctc_loss gives NaN)."""
    import torch

    rng = np.random.default_rng(seed)
    n, t, c, s = (int(v) for v in rng.integers((1, 1, 2, 1), (6, 12, 7, 7)))
    blank, targets, input_lengths, target_lengths = _random_call(rng, n, t, c, s)
    x = torch.from_numpy(rng.normal(scale=2.0, size=(n, t, c))).requires_grad_(True)
    args = (torch.from_numpy(targets), torch.from_numpy(input_lengths), torch.from_numpy(target_lengths))
    for zero_infinity in (False, True):
        for reduction in ("none", "mean", "sum"):
            ours = anyloss.ctc_loss(x, *args, blank=blank, reduction=reduction, zero_infinity=zero_infinity)
            theirs = _torch_ctc(x, targets, input_lengths, target_lengths, blank, reduction, zero_infinity)
            assert ours.shape == theirs.shape and ours.dtype == torch.float64
            np.testing.assert_allclose(to_numpy(ours), to_numpy(theirs), rtol=1e-12, atol=1e-12)
        weights = torch.from_numpy(rng.uniform(0.5, 1.5, size=n))
        ours = anyloss.ctc_loss(x, *args, blank=blank, reduction="none", zero_infinity=zero_infinity)
        theirs = _torch_ctc(x, targets, input_lengths, target_lengths, blank, "none", zero_infinity)
        feasible = torch.from_numpy(np.isfinite(ref_ctc_loss(to_numpy(x), targets, input_lengths, target_lengths, blank)))
        (g,) = torch.autograd.grad((ours * weights).sum(), x)
        (h,) = torch.autograd.grad((torch.where(feasible, theirs, 0) * weights).sum(), x)
        assert torch.isfinite(g).all()
        np.testing.assert_allclose(to_numpy(g[feasible]), to_numpy(h[feasible]), rtol=1e-9, atol=1e-12)
        assert torch.equal(g[~feasible], torch.zeros_like(g[~feasible]))


def test_equals_torch_ctc_loss_float32_at_the_benchmark_size():
    """(N, T, C, S) = (16, 128, 32, 30) in float32: values and gradients."""
    import torch

    rng = np.random.default_rng(7)
    n, t, c, s = 16, 128, 32, 30
    blank, targets, input_lengths, target_lengths = _random_call(rng, n, t, c, s)
    input_lengths = np.maximum(input_lengths, 2 * s + 1)
    x = torch.from_numpy(rng.normal(size=(n, t, c)).astype(np.float32)).requires_grad_(True)
    ours = anyloss.ctc_loss(x, *(torch.from_numpy(a) for a in (targets, input_lengths, target_lengths)), blank=blank)
    theirs = _torch_ctc(x, targets, input_lengths, target_lengths, blank, "mean", False)
    assert ours.dtype == torch.float32
    assert_close(to_numpy(ours), to_numpy(theirs), "float32")
    (g,) = torch.autograd.grad(ours, x)
    (h,) = torch.autograd.grad(theirs, x)
    assert_close(to_numpy(g), to_numpy(h), "float32", factor=16)


def test_equals_optax_ctc_loss():
    """Per-sequence values and jax.grad against optax.losses.ctc_loss (paddings
    for lengths) on feasible sequences, where optax's finite stand-in for
    log 0 does not show; repeated labels and an empty target."""
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)

    def ours(z, targets, frames, lengths, w):
        return (anyloss.ctc_loss(z, targets, frames, lengths, reduction="none") * w).sum()

    def theirs(z, frame_pad, labels, label_pad, w):
        return (optax.losses.ctc_loss(z, frame_pad, labels, label_pad) * w).sum()

    ours_grad = jax.jit(jax.value_and_grad(ours))
    theirs_grad = jax.jit(jax.value_and_grad(theirs))
    for seed in range(3):
        a = make_ctc(4, 9, 5, 3, repeats=seed == 1, empty=seed == 2)(np.random.default_rng(seed))
        w = jnp.asarray(np.random.default_rng(seed).uniform(0.5, 1.5, size=4))
        frame_pad = jnp.asarray(np.arange(9)[None] >= a["input_lengths"][:, None], dtype=jnp.float64)
        label_pad = jnp.asarray(np.arange(3)[None] >= a["target_lengths"][:, None], dtype=jnp.float64)
        x = jnp.asarray(a["logits"])
        mine = ours_grad(x, *(jnp.asarray(a[k]) for k in ("targets", "input_lengths", "target_lengths")), w)
        peer = theirs_grad(x, frame_pad, jnp.asarray(np.maximum(a["targets"], 0)), label_pad, w)
        for got, want in zip(mine, peer):
            assert_close(np.asarray(got), np.asarray(want), "float64")


# ------------------------------------------------------------------------ hard inputs

# The portable path on JAX runs op by op (a compile per primitive and shape):
# it is the formula its fast path compiles, checked on the other libraries.
HARD = [
    pytest.param(lib, path, id=f"{lib}-{path}")
    for lib in ("numpy", "torch", "jax", "mlx")
    for path in ("fast", "portable")
    if not (lib == "jax" and path == "portable")
]


def _path(path):
    return _native.portable() if path == "portable" else contextlib.nullcontext()


def _grad(lib, f, x):
    """The gradient of ``f`` at ``x`` by the library's autodiff (NumPy has none: None)."""
    if lib == "numpy":
        return None
    if lib == "torch":
        import torch

        z = torch.from_numpy(np.array(x)).requires_grad_(True)
        (g,) = torch.autograd.grad(f(z), z)
        return to_numpy(g)
    if lib == "jax":
        import jax

        jax.config.update("jax_enable_x64", True)
        return np.asarray(jax.grad(f)(to_lib("jax", x)))
    import mlx.core as mx

    return np.array(mx.grad(f)(mx.array(x)))


def _hard_call(lib, arrays, x, **params):
    """The loss of ``arrays`` with logits ``x`` on ``lib`` and its gradient wrt them."""
    rest = {k: to_lib(lib, v) for k, v in arrays.items() if k != "logits"}
    loss = anyloss.ctc_loss(to_lib(lib, x), **rest, reduction="none", **params)
    grad = _grad(lib, lambda z: anyloss.ctc_loss(z, **rest, reduction="sum", **params), x)
    return to_numpy(loss), grad


INFEASIBLE = {
    # one label, no frames; two labels, one frame; a repeat with no frame for its blank
    "targets": np.array([[1, 0], [1, 2], [2, 2], [1, 2]]),
    "input_lengths": np.array([0, 1, 2, 4]),
    "target_lengths": np.array([1, 2, 2, 2]),
}


@pytest.mark.parametrize("lib, path", HARD)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_infeasible_alignments(lib, path, zero_infinity):
    """inf, or 0 with zero_infinity; the gradient of the batch is finite, 0 for
    the infeasible rows and right for the feasible one."""
    dtype = "float64" if lib != "mlx" else "float32"
    x = np.random.default_rng(0).normal(size=(4, 4, 3)).astype(dtype)
    with _path(path):
        loss, grad = _hard_call(lib, INFEASIBLE, x, zero_infinity=zero_infinity)
    want = ref_ctc_loss(x, **INFEASIBLE, zero_infinity=zero_infinity)
    assert want[0] == want[1] == want[2] == (0.0 if zero_infinity else np.inf)
    assert loss[:3].tolist() == want[:3].tolist()
    assert_close(loss[3], want[3], dtype)
    if grad is not None:
        assert np.all(np.isfinite(grad))
        assert np.all(grad[:3] == 0)
        feasible = {k: v[3:] for k, v in INFEASIBLE.items()}
        want = numeric_grad(CASES[0], {**feasible, "logits": x[3:].astype(np.float64)}, "logits", np.ones(1))
        np.testing.assert_allclose(grad[3], want[0], rtol=1e-6 if lib != "mlx" else 1e-4, atol=1e-6)


@pytest.mark.parametrize("lib, path", HARD)
def test_empty_targets(lib, path):
    """Target length 0: every frame emits the blank, ``-sum log p(blank)``, and
    0 for no frames; 'mean' divides by 1."""
    dtype = "float64" if lib != "mlx" else "float32"
    x = np.random.default_rng(1).normal(size=(3, 5, 4)).astype(dtype)
    arrays = {
        "targets": np.zeros((3, 0), dtype=np.int64),
        "input_lengths": np.array([5, 2, 0]),
        "target_lengths": np.array([0, 0, 0]),
    }
    want = [-np.sum(_log_softmax(x.astype(np.float64))[i, :k, 3]) for i, k in enumerate([5, 2, 0])]
    with _path(path):
        loss, grad = _hard_call(lib, arrays, x, blank=3)
        mean = anyloss.ctc_loss(*(to_lib(lib, v) for v in (x, *arrays.values())), blank=3)
    assert_close(loss, want, dtype)
    assert_close(to_numpy(mean), np.mean(want), dtype)
    if grad is not None:
        softmax = np.exp(_log_softmax(x.astype(np.float64)))
        live = (np.arange(5)[None, :] < np.array([5, 2, 0])[:, None])[..., None]
        assert_close(grad, np.where(live, softmax - np.eye(4)[3], 0.0), dtype)


@pytest.mark.parametrize("lib, path", HARD)
def test_log_probabilities_pass_unchanged_and_impossible_classes(lib, path):
    """Normalized log-probabilities give the loss of their logits; a class of
    probability 0 (``-inf``) takes no path, the others' loss stays finite,
    and the gradient stays finite."""
    dtype = "float64" if lib != "mlx" else "float32"
    x = np.random.default_rng(2).normal(size=(2, 5, 4))
    x[:, :, 3] = -np.inf
    log_p = _log_softmax(x).astype(dtype)
    arrays = {"targets": np.array([[1, 2], [2, 2]]), "input_lengths": np.array([5, 4]),
              "target_lengths": np.array([2, 2])}
    with _path(path):
        loss, grad = _hard_call(lib, arrays, log_p)
    assert_close(loss, ref_ctc_loss(x, **arrays), dtype)
    if grad is not None:
        assert np.all(np.isfinite(grad))


def test_large_batch_on_numpy():
    """A call large enough for NumPy's blocked path (more than 2^17 logits) is
    computed whole."""
    rng = np.random.default_rng(3)
    a = make_ctc(8, 128, 130, 20)(rng)
    got = anyloss.ctc_loss(**a, reduction="none")
    import torch

    want = _torch_ctc(torch.from_numpy(a["logits"]), a["targets"], a["input_lengths"], a["target_lengths"],
                      0, "none", False)
    assert_close(got, to_numpy(want), "float64")


# ------------------------------------------------------------- unread values, traced


def test_jax_jit_unread_values_give_nan():
    """Under jax.jit lengths and labels cannot be read: out-of-range ones give
    NaN for their sequence, the others are untouched."""
    import jax

    jax.config.update("jax_enable_x64", True)
    a = make_ctc(4, 6, 4, 3)(np.random.default_rng(4))
    good = ref_ctc_loss(**a)
    bad = {k: v.copy() for k, v in a.items()}
    bad["targets"][1, 0] = 9  # a class beyond C
    bad["input_lengths"][2] = 7  # beyond T
    bad["target_lengths"][3] = 4  # beyond S
    got = np.asarray(jax.jit(lambda *xs: anyloss.ctc_loss(*xs, reduction="none"))(
        *(to_lib("jax", bad[k]) for k in ("logits", "targets", "input_lengths", "target_lengths"))
    ))
    assert np.isnan(got[1:]).all()
    assert_close(got[0], good[0], "float64")


def test_mlx_padding_is_not_read():
    """MLX values are not read (lazy): padding of any value is ignored."""
    import mlx.core as mx

    a = make_ctc(3, 6, 4, 3)(np.random.default_rng(5))
    targets = np.where(a["targets"] < 0, 1000, a["targets"])
    got = anyloss.ctc_loss(*(mx.array(v.astype(np.float32) if v.dtype.kind == "f" else v) for v in (a["logits"], targets, a["input_lengths"], a["target_lengths"])), reduction="none")
    assert_close(np.array(got), ref_ctc_loss(**a), "float32")


# ------------------------------------------------------------------------ bad inputs


def _call(**changes):
    a = make_ctc(2, 5, 4, 3)(np.random.default_rng(6))
    return anyloss.ctc_loss(**{**a, **changes})


@pytest.mark.parametrize("lib", ["numpy", "torch", "jax"])
def test_bad_values_on_the_host(lib):
    a = make_ctc(2, 5, 4, 3)(np.random.default_rng(6))

    def call(**changes):
        return anyloss.ctc_loss(**{k: to_lib(lib, v) for k, v in {**a, **changes}.items()})

    with raises(ValueError, "ctc_loss", "input_lengths", "from 5 to 6", "5 frames"):
        call(input_lengths=np.array([5, 6]))
    with raises(ValueError, "ctc_loss", "input_lengths", "-1"):
        call(input_lengths=np.array([5, -1]))
    with raises(ValueError, "ctc_loss", "target_lengths", "room for 3 labels"):
        call(target_lengths=np.array([4, 1]))
    with raises(ValueError, "ctc_loss", "targets holds 4 at [0, 1]", "target length 3", "4 classes"):
        call(targets=np.array([[1, 4, 2], [1, -1, -1]]), target_lengths=np.array([3, 1]))
    with raises(ValueError, "ctc_loss", "targets holds -2 at [1, 0]", "target length 1", "0 <= index < 4"):
        call(targets=np.array([[1, 3, 2], [-2, -1, -1]]), target_lengths=np.array([3, 1]))
    with raises(ValueError, "ctc_loss", "targets holds 0 at [0, 1]", "(the blank)", "choose another blank"):
        call(targets=np.array([[1, 0, 2], [1, -1, -1]]), target_lengths=np.array([3, 1]))
    # the padding past the lengths is not read; a target longer than the input is allowed
    call(targets=np.array([[1, 2, 3], [2, 0, 99]]), target_lengths=np.array([3, 1]))
    assert np.isinf(to_numpy(call(input_lengths=np.array([2, 5]), target_lengths=np.array([3, 1]))))


def test_bad_shapes_and_types():
    a = make_ctc(2, 5, 4, 3)(np.random.default_rng(6))
    with raises(ValueError, "ctc_loss", "logits", "(N, T, C)", "(2, 5)"):
        _call(logits=a["logits"][:, :, 0])
    with raises(ValueError, "ctc_loss", "targets", "(3,)", "(2, S)"):
        _call(targets=a["targets"][0])
    with raises(ValueError, "ctc_loss", "targets", "(1, 3)", "(2, S)"):
        _call(targets=a["targets"][:1])
    with raises(ValueError, "ctc_loss", "input_lengths", "(2, 1)", "(2,)"):
        _call(input_lengths=a["input_lengths"][:, None])
    with raises(ValueError, "ctc_loss", "target_lengths", "(1,)", "(2,)"):
        _call(target_lengths=a["target_lengths"][:1])
    with raises(TypeError, "ctc_loss", "input_lengths", "integer", "float64"):
        _call(input_lengths=a["input_lengths"].astype(np.float64))
    with raises(TypeError, "ctc_loss", "targets", "integer", "float32"):
        _call(targets=a["targets"].astype(np.float32))
    with raises(ValueError, "ctc_loss", "blank=4", "4 classes"):
        _call(blank=4)
    with raises(ValueError, "ctc_loss", "blank=-1"):
        _call(blank=-1)
    with raises(TypeError, "ctc_loss", "blank", "float"):
        _call(blank=1.0)
    with raises(ValueError, "ctc_loss", "'avg'"):
        _call(reduction="avg")
    with raises(TypeError, "ctc_loss", "targets", "list"):
        _call(targets=[[1, 2, 3], [1, 2, 3]])
    import torch

    with raises(TypeError, "ctc_loss", "numpy", "torch"):
        _call(input_lengths=torch.tensor([5, 5]))
