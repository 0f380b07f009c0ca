"""cosine_embedding_loss and hinge_embedding_loss: float64 references written
from PyTorch's definitions, torch.nn.functional as the peer (values and
gradients), every library, autodiff and compilers, hard inputs, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

import anyloss
from backends import LIBRARIES, to_numpy
from matrix_checks import (
    Spec,
    check_fast_equals_portable,
    check_jax_grad_and_jit,
    check_library,
    check_mlx_grad_and_compile,
    check_torch_compile,
    check_torch_gradcheck,
    first_of_each,
    ids,
    library_params,
    run_everywhere,
)
from test_libraries import assert_close

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


# ------------------------------------------------------------------ float64 references


def ref_cosine_embedding_loss(x1, x2, targets, margin=0.0, axis=-1, eps=1e-8):
    """1 - cos for y = 1, max(0, cos - margin) for y = -1, 0 otherwise."""
    norms = np.sqrt(np.sum(x1 * x1, axis=axis)) * np.sqrt(np.sum(x2 * x2, axis=axis))
    cos = np.sum(x1 * x2, axis=axis) / np.maximum(norms, eps)
    return np.where(targets == 1, 1 - cos, np.where(targets == -1, np.maximum(0, cos - margin), 0.0))


def ref_hinge_embedding_loss(inputs, targets, margin=1.0):
    """x for y = 1, max(0, margin - x) for y = -1, both for other values."""
    return np.where(targets != 1, np.maximum(0, margin - inputs), 0.0) + np.where(targets != -1, inputs, 0.0)


# ----------------------------------------------------------------------------- specs


def _signs(rng, shape):
    return np.where(rng.uniform(size=shape) < 0.5, -1, 1).astype(np.int64)


def make_cosine(shape, axis, margin):
    def make(rng):
        x1 = rng.normal(size=shape)
        x2 = rng.normal(size=shape)
        targets = _signs(rng, np.delete(np.array(shape), axis % len(shape)))
        # keep cos - margin away from 0 where it matters
        cos = ref_cosine_embedding_loss(x1, x2, np.ones_like(targets), axis=axis)
        targets = np.where(np.abs((1 - cos) - margin) < 0.05, 1, targets)
        return {"x1": x1, "x2": x2, "targets": targets}

    return make


def make_hinge(shape, margin):
    def make(rng):
        x = rng.uniform(0.0, 2.0 * margin, size=shape)
        x = np.where(np.abs(x - margin) < 0.05, margin + 0.1, x)  # away from the kink
        return {"inputs": x, "targets": _signs(rng, shape)}

    return make


SPECS = [
    Spec("cosine-default", "cosine_embedding_loss", make_cosine((6, 5), -1, 0.0), ref_cosine_embedding_loss,
         seed=1),
    Spec("cosine-margin-axis0", "cosine_embedding_loss", make_cosine((5, 6), 0, 0.3), ref_cosine_embedding_loss,
         {"margin": 0.3, "axis": 0}, seed=2),
    Spec("cosine-3d-eps", "cosine_embedding_loss", make_cosine((3, 4, 5), 1, -0.2), ref_cosine_embedding_loss,
         {"margin": -0.2, "axis": 1, "eps": 1e-3}, seed=3),
    Spec("hinge-default", "hinge_embedding_loss", make_hinge((10,), 1.0), ref_hinge_embedding_loss, seed=4),
    Spec("hinge-margin2-2d", "hinge_embedding_loss", make_hinge((6, 5), 2.0), ref_hinge_embedding_loss,
         {"margin": 2.0}, seed=5),
]
FIRSTS = first_of_each(SPECS)


@pytest.mark.parametrize("lib, dtype, spec", library_params(SPECS))
def test_every_library(lib, dtype, spec):
    check_library(spec, lib, dtype)


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_torch_gradcheck(spec):
    check_torch_gradcheck(spec)


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_jax_grad_and_jit(spec):
    check_jax_grad_and_jit(spec)


@pytest.mark.parametrize("spec", SPECS, ids=ids(SPECS))
def test_mlx_grad_and_compile(spec):
    check_mlx_grad_and_compile(spec)


@pytest.mark.parametrize("spec", FIRSTS, ids=ids(FIRSTS))
def test_torch_compile(spec):
    check_torch_compile(spec)


def _batch(spec, rng):
    """Per-call sizes: 64 x 128 embeddings, 256 scores."""
    if spec.loss == "cosine_embedding_loss":
        return make_cosine((64, 128), -1, 0.0)(rng)
    return make_hinge((256,), 1.0)(rng)


@pytest.mark.parametrize("lib", LIBRARIES)
@pytest.mark.parametrize("spec", FIRSTS, ids=ids(FIRSTS))
def test_fast_path_equals_portable_at_batch_size(lib, spec):
    check_fast_equals_portable(spec, lib, _batch(spec, np.random.default_rng(7)))


# ----------------------------------------------------------------------------- peers


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("margin", [0.0, 0.4, -0.5])
def test_cosine_embedding_equals_torch(dtype, margin):
    """F.cosine_embedding_loss's values and gradients (PyTorch adds 1e-12 to
    each squared norm: invisible for these norms)."""
    import torch
    import torch.nn.functional as F

    arrays = make_cosine((16, 8), -1, margin)(np.random.default_rng(20))
    ours_in = {k: torch.from_numpy(v.astype(dtype) if k != "targets" else v).requires_grad_(k != "targets")
               for k, v in arrays.items()}
    peer_in = {k: torch.from_numpy(v.astype(dtype)).requires_grad_(k != "targets") for k, v in arrays.items()}
    for reduction in ("none", "mean", "sum"):
        ours = anyloss.cosine_embedding_loss(**ours_in, margin=margin, reduction=reduction)
        peer = F.cosine_embedding_loss(peer_in["x1"], peer_in["x2"], peer_in["targets"], margin=margin,
                                       reduction=reduction)
        assert ours.dtype == peer.dtype
        assert_close(to_numpy(ours), to_numpy(peer), dtype, factor=16)
    weights = torch.from_numpy(np.random.default_rng(21).uniform(0.5, 1.5, 16).astype(dtype))
    (anyloss.cosine_embedding_loss(**ours_in, margin=margin) * weights).sum().backward()
    (F.cosine_embedding_loss(peer_in["x1"], peer_in["x2"], peer_in["targets"], margin=margin, reduction="none")
     * weights).sum().backward()
    for k in ("x1", "x2"):
        assert_close(to_numpy(ours_in[k].grad), to_numpy(peer_in[k].grad), dtype, factor=16)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("margin", [1.0, 0.5, 3.0])
def test_hinge_embedding_equals_torch(dtype, margin):
    """F.hinge_embedding_loss's values and gradients, targets 0 included
    (both terms, as PyTorch)."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(22)
    x = make_hinge((40,), margin)(rng)["inputs"] - 0.3 * margin
    targets = rng.choice([-1, 1, 0], size=40)
    ours_in = torch.from_numpy(x.astype(dtype)).requires_grad_()
    peer_in = torch.from_numpy(x.astype(dtype)).requires_grad_()
    t = torch.from_numpy(targets.astype(dtype))
    for reduction in ("none", "mean", "sum"):
        ours = anyloss.hinge_embedding_loss(ours_in, t, margin=margin, reduction=reduction)
        peer = F.hinge_embedding_loss(peer_in, t, margin=margin, reduction=reduction)
        assert_close(to_numpy(ours), to_numpy(peer), dtype)
    weights = torch.from_numpy(rng.uniform(0.5, 1.5, 40).astype(dtype))
    (anyloss.hinge_embedding_loss(ours_in, t, margin=margin) * weights).sum().backward()
    (F.hinge_embedding_loss(peer_in, t, margin=margin, reduction="none") * weights).sum().backward()
    assert_close(to_numpy(ours_in.grad), to_numpy(peer_in.grad), dtype)


# ----------------------------------------------------------------------- hard inputs


def test_zero_vector_gives_finite_loss_and_gradient():
    """A zero vector has cosine 0: loss 1 against a similar target, 0 against
    a dissimilar one (margin 0); the gradients are finite."""
    import jax
    import torch

    x1 = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    x2 = np.array([[1.0, -1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    targets = np.array([1, -1, 1])
    for (lib, path), got in run_everywhere(anyloss.cosine_embedding_loss, {"x1": x1, "x2": x2, "targets": targets},
                                           "float32").items():
        np.testing.assert_array_equal(got, [1.0, 0.0, 1.0], err_msg=f"{lib} {path}")
    a, b = torch.from_numpy(x1.copy()).requires_grad_(), torch.from_numpy(x2.copy()).requires_grad_()
    anyloss.cosine_embedding_loss(a, b, torch.from_numpy(targets), reduction="sum").backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    grads = jax.grad(lambda u, v: anyloss.cosine_embedding_loss(u, v, jax.numpy.asarray(targets), reduction="sum"),
                     argnums=(0, 1))(x1, x2)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_cosine_of_huge_and_tiny_vectors(scale):
    """float32 vectors of norm 1e30 (squares overflow) or 1e-30 (squares
    underflow): the cosine is the unscaled vectors' (PyTorch gives nan or 1)."""
    rng = np.random.default_rng(23)
    x1, x2 = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    targets = np.array([1, -1, 1, -1])
    x1s, x2s = (x1 * scale).astype(np.float32), (x2 * scale).astype(np.float32)
    want = ref_cosine_embedding_loss(x1s.astype(np.float64) / scale, x2s.astype(np.float64) / scale, targets,
                                     eps=0.0)
    for (lib, path), got in run_everywhere(anyloss.cosine_embedding_loss, {"x1": x1s, "x2": x2s,
                                                                          "targets": targets},
                                           "float32", eps=0.0).items():
        assert_close(got, want, "float32", factor=4)


def test_hinge_embedding_infinite_distance():
    """An infinite distance: loss 0 for a dissimilar pair, inf for a similar one."""
    x = np.array([np.inf, np.inf, 0.5])
    targets = np.array([-1, 1, -1])
    for (lib, path), got in run_everywhere(anyloss.hinge_embedding_loss, {"inputs": x, "targets": targets},
                                           "float32").items():
        np.testing.assert_array_equal(got, [0.0, np.inf, 0.5], err_msg=f"{lib} {path}")


def test_targets_other_than_plus_minus_one_follow_pytorch():
    """0 among -1 and 1: cosine gives 0 there, hinge both terms."""
    x1 = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    x2 = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 2.0]])
    got = anyloss.cosine_embedding_loss(x1, x2, np.array([-1, 0, 1]))
    np.testing.assert_allclose(got, [0.0, 0.0, 0.0], atol=1e-15)
    got = anyloss.hinge_embedding_loss(np.array([0.3, 0.3, 0.3]), np.array([-1, 0, 1]))
    np.testing.assert_allclose(got, [0.7, 1.0, 0.3])


# ----------------------------------------------------------------------- bad inputs

_X = np.ones((4, 3))
_T = np.array([1, -1, 1, -1])


@pytest.mark.parametrize(
    "func, kwargs, error, words",
    [
        ("cosine_embedding_loss", dict(x1=_X, x2=_X, targets=np.array([0, 1, 1, 0])), ValueError,
         ["targets", "1 (similar) or -1", "from 0 to 1", "2 * targets - 1"]),
        ("cosine_embedding_loss", dict(x1=_X, x2=_X, targets=np.array([1, -1, 2, 1])), ValueError,
         ["targets", "to 2"]),
        ("cosine_embedding_loss", dict(x1=_X, x2=_X, targets=np.ones(3)), ValueError,
         ["targets", "(3,)", "(4,)", "(4, 3)"]),
        ("cosine_embedding_loss", dict(x1=_X, x2=np.ones((4, 2)), targets=_T), ValueError,
         ["x2", "(4, 2)", "(4, 3)"]),
        ("cosine_embedding_loss", dict(x1=_X, x2=_X, targets=_T, margin=1.5), ValueError, ["margin", "[-1, 1]"]),
        ("cosine_embedding_loss", dict(x1=_X, x2=_X, targets=_T, eps=-1e-8), ValueError, ["eps"]),
        ("cosine_embedding_loss", dict(x1=_X, x2=_X, targets=_T, axis=2), ValueError, ["axis=2", "out of range"]),
        ("cosine_embedding_loss", dict(x1=_X, x2=_X, targets=_T, reduction="max"), ValueError, ["'max'"]),
        ("hinge_embedding_loss", dict(inputs=np.ones(4), targets=np.array([0, 1, 0, 1])), ValueError,
         ["targets", "2 * targets - 1"]),
        ("hinge_embedding_loss", dict(inputs=np.ones(4), targets=np.ones((4, 1))), ValueError,
         ["targets", "(4, 1)", "(4,)"]),
        ("hinge_embedding_loss", dict(inputs=np.ones(4), targets=_T, margin="1"), TypeError, ["margin", "str"]),
        ("hinge_embedding_loss", dict(inputs=np.ones(4) + 0j, targets=_T), TypeError, ["inputs", "complex"]),
    ],
)
def test_bad_inputs(func, kwargs, error, words):
    with pytest.raises(error) as info:
        getattr(anyloss, func)(**kwargs)
    message = str(info.value)
    assert func in message
    for w in words:
        assert w in message, message


def test_value_checks_skip_traces():
    """Under jax.jit the targets are not read: 0/1 labels give PyTorch's numbers."""
    import jax

    got = jax.jit(lambda x, t: anyloss.hinge_embedding_loss(x, t))(np.array([0.3, 0.3]), np.array([0, 1]))
    np.testing.assert_allclose(np.asarray(got), [1.0, 0.3])


def test_inputs_are_not_changed():
    for spec in FIRSTS:
        arrays = spec.arrays()
        copies = {k: v.copy() for k, v in arrays.items()}
        spec.call(arrays, "mean")
        for k in arrays:
            np.testing.assert_array_equal(arrays[k], copies[k])


def test_plain_form_for_fast_paths():
    """``_formulas.cosine_embedding_plain``: the formula's values where it says
    it is exact (ordinary norms), and not exact for huge or zero vectors."""
    import array_api_compat.numpy as xp

    from anyloss import _formulas

    arrays = make_cosine((16, 8), -1, 0.2)(np.random.default_rng(50))
    loss, exact = _formulas.cosine_embedding_plain(xp, *arrays.values(), 1, 0.2, 1e-8)
    assert bool(exact)
    np.testing.assert_allclose(loss, ref_cosine_embedding_loss(*arrays.values(), margin=0.2), rtol=1e-13)
    for scale in (1e200, 0.0):
        _, exact = _formulas.cosine_embedding_plain(xp, arrays["x1"] * scale, arrays["x2"], arrays["targets"],
                                                    1, 0.2, 1e-8)
        assert not bool(exact)
