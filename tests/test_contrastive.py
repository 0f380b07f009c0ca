"""info_nce_loss and ntxent_loss: float64 references written from the
definitions, PyTorch's MultipleNegativesRankingLoss / CLIP expression and
optax's ntxent as peers (values and gradients), every library, autodiff and
compilers, hard inputs, bad inputs."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import anyloss
from backends import LIBRARIES, to_lib, to_numpy
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


def _unit(x):
    norm = np.sqrt(np.sum(x * x, axis=-1, keepdims=True))
    return x / np.where(norm == 0, 1.0, norm)


def _logsumexp(x, axis):
    top = np.max(x, axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.sum(np.exp(x - top), axis=axis))


def ref_info_nce_loss(queries, keys, temperature=0.07, symmetric=False):
    """-log softmax of each query's cosines / temperature at its own key."""
    s = _unit(queries) @ _unit(keys).T / temperature
    n = len(queries)
    diagonal = s[np.arange(n), np.arange(n)]
    loss = _logsumexp(s, 1) - diagonal
    if symmetric:
        loss = 0.5 * (loss + _logsumexp(s, 0) - diagonal)
    return loss


def ref_ntxent_loss(embeddings, labels, temperature=0.07):
    """The mean over ordered pairs i != j of equal labels of
    -log(e^{s_ij} / (e^{s_ij} + sum over other labels k of e^{s_ik}))."""
    s = _unit(embeddings) @ _unit(embeddings).T / temperature
    total, count = 0.0, 0
    for i in range(len(labels)):
        negatives = s[i][labels != labels[i]]
        for j in range(len(labels)):
            if j != i and labels[j] == labels[i]:
                total += np.logaddexp.reduce(np.concatenate([[s[i, j]], negatives])) - s[i, j]
                count += 1
    return np.asarray(total / count if count else 0.0)


# ----------------------------------------------------------------------------- specs


def make_info_nce(n, m, d):
    def make(rng):
        q = rng.normal(size=(n, d))
        k = rng.normal(size=(m, d))
        k[:n] += 0.8 * q  # positives nearer their queries than chance
        return {"queries": q, "keys": k}

    return make


def make_ntxent(labels, d):
    def make(rng):
        lab = np.asarray(labels, dtype=np.int64)
        centers = rng.normal(size=(lab.max() + 1, d))
        return {"embeddings": centers[lab] + 0.7 * rng.normal(size=(len(lab), d)), "labels": lab}

    return make


SPECS = [
    Spec("info_nce-default", "info_nce_loss", make_info_nce(8, 8, 16), ref_info_nce_loss, seed=1),
    Spec("info_nce-hard-negatives", "info_nce_loss", make_info_nce(8, 12, 16), ref_info_nce_loss,
         {"temperature": 0.1}, seed=2),
    Spec("info_nce-symmetric", "info_nce_loss", make_info_nce(8, 8, 16), ref_info_nce_loss,
         {"temperature": 0.05, "symmetric": True}, seed=3),
    Spec("ntxent-pairs", "ntxent_loss", make_ntxent([0, 0, 1, 1, 2, 2, 3, 3], 16), ref_ntxent_loss,
         seed=4),
    Spec("ntxent-groups", "ntxent_loss", make_ntxent([2, 0, 1, 0, 2, 3, 0, 1], 16), ref_ntxent_loss,
         {"temperature": 0.5}, seed=5),
]
FIRSTS = first_of_each(SPECS)


@pytest.mark.parametrize("lib, dtype, spec", library_params(SPECS))
def test_every_library(lib, dtype, spec):
    # Logits are cosines over the temperature (up to 20): a few more roundings.
    check_library(spec, lib, dtype, factor=32.0)


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


def _batch(spec, rng, n, d):
    """A spec's kind of inputs at another size."""
    if spec.loss == "info_nce_loss":
        return make_info_nce(n, n, d)(rng)
    return make_ntxent(np.arange(n) // 2, d)(rng)


@pytest.mark.parametrize("lib", LIBRARIES)
@pytest.mark.parametrize("spec", FIRSTS, ids=ids(FIRSTS))
def test_fast_path_equals_portable_at_batch_size(lib, spec):
    check_fast_equals_portable(spec, lib, _batch(spec, np.random.default_rng(7), 64, 128))


@pytest.mark.parametrize("spec", FIRSTS, ids=ids(FIRSTS))
def test_numpy_large_batch_is_one_computation(spec):
    """A batch above the NumPy fast path's block size: every row sees every
    other row (the loss cannot be cut into blocks of rows)."""
    arrays = _batch(spec, np.random.default_rng(8), 640, 256)
    got = spec.call(arrays, spec.reductions[0])
    assert_close(got, spec.expected(arrays, spec.reductions[0]), "float64")


# ----------------------------------------------------------------------------- peers


def _torch_mnrl(q, k, temperature, symmetric):
    """sentence-transformers' MultipleNegativesRankingLoss (scale = 1 / temperature)
    and CLIP's symmetric loss, written with torch.nn.functional."""
    import torch
    import torch.nn.functional as F

    logits = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).T / temperature
    labels = torch.arange(len(q))
    loss = F.cross_entropy(logits, labels, reduction="none")
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, labels, reduction="none"))
    return loss


@pytest.mark.parametrize("spec", [s for s in SPECS if s.loss == "info_nce_loss"], ids=ids(SPECS[:3]))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_info_nce_equals_torch_mnrl_values_and_gradients(spec, dtype):
    import torch

    arrays = spec.arrays()
    temperature = spec.params.get("temperature", 0.07)
    symmetric = spec.params.get("symmetric", False)
    ours_in = {k: torch.from_numpy(v.astype(dtype)).requires_grad_() for k, v in arrays.items()}
    peer_in = {k: torch.from_numpy(v.astype(dtype)).requires_grad_() for k, v in arrays.items()}
    weights = torch.from_numpy(np.random.default_rng(9).uniform(0.5, 1.5, len(arrays["queries"])).astype(dtype))
    ours = anyloss.info_nce_loss(**ours_in, **spec.params)
    peer = _torch_mnrl(peer_in["queries"], peer_in["keys"], temperature, symmetric)
    (ours * weights).sum().backward()
    (peer * weights).sum().backward()
    assert_close(to_numpy(ours), to_numpy(peer), dtype, factor=32)
    for k in arrays:
        assert_close(to_numpy(ours_in[k].grad), to_numpy(peer_in[k].grad), dtype, factor=32)
    mean = anyloss.info_nce_loss(**ours_in, **spec.params, reduction="mean")
    assert_close(mean.item(), _torch_mnrl(peer_in["queries"], peer_in["keys"], temperature, symmetric).mean().item(),
                 dtype, factor=32)


@pytest.mark.parametrize("spec, dtype", [(SPECS[3], "float32"), (SPECS[3], "float64"), (SPECS[4], "float64")],
                         ids=["pairs-float32", "pairs-float64", "groups-float64"])
def test_ntxent_equals_optax_values_and_gradients(spec, dtype):
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", True)
    arrays = spec.arrays()
    e = jnp.asarray(arrays["embeddings"].astype(dtype))
    labels = jnp.asarray(arrays["labels"])
    temperature = spec.params.get("temperature", 0.07)
    ours, ours_grad = jax.value_and_grad(lambda x: anyloss.ntxent_loss(x, labels, temperature))(e)
    peer, peer_grad = jax.jit(jax.value_and_grad(lambda x: optax.ntxent(x, labels, temperature)))(e)
    assert ours.dtype == peer.dtype and ours.shape == peer.shape == ()
    assert_close(float(ours), float(peer), dtype, factor=32)
    assert_close(np.asarray(ours_grad), np.asarray(peer_grad), dtype, factor=32)


# ----------------------------------------------------------------------- hard inputs


def _mp_info_nce(q, k, temperature):
    """Row losses with 60 digits, from the exact values of the inputs."""
    with mp.workdps(60):
        def unit(v):
            norm = mp.sqrt(sum(mp.mpf(float(a)) ** 2 for a in v))
            return [mp.mpf(float(a)) / norm if norm else mp.mpf(0) for a in v]

        uq, uk = [unit(r) for r in q], [unit(r) for r in k]
        scale = mp.mpf(1) / mp.mpf(temperature)
        out = []
        for i, a in enumerate(uq):
            s = [scale * mp.fsum(x * y for x, y in zip(a, b)) for b in uk]
            out.append(float(mp.log(mp.fsum(mp.exp(v - s[i]) for v in s))))
        return np.array(out)


def test_info_nce_confident_match_keeps_its_tiny_loss():
    """One-hot queries and keys at temperature 0.02: logits 50 and 0, loss
    log(1 + 3 e^-50) = 5.8e-22, which logsumexp - logit rounds to 0.  JAX's
    fast path gives way to that form, as for cross_entropy (the differences
    page): 0 there, never negative."""
    eye = np.eye(4)
    want = _mp_info_nce(eye, eye, 0.02)
    assert want[0] > 1e-22
    for dtype, libs in (("float32", None), ("float64", ("numpy", "torch"))):
        for (lib, path), got in run_everywhere(anyloss.info_nce_loss, {"queries": eye, "keys": eye}, dtype, libs,
                                               temperature=0.02).items():
            if (lib, path) == ("jax", "fast"):
                assert np.all((got >= 0) & (got <= np.finfo(dtype).eps)), got
                continue
            np.testing.assert_allclose(got, want, rtol=20 * np.finfo(dtype).eps, err_msg=f"{lib} {path} {dtype}")


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_info_nce_huge_and_tiny_norms(dtype):
    """Cosines do not depend on the norms: embeddings scaled by 1e30 or 1e-30
    (float32), 6e4 or 1e-4 (float16), whose squares overflow or underflow."""
    rng = np.random.default_rng(10)
    arrays = make_info_nce(4, 4, 4)(rng)
    big, small = (6e4, 1e-4) if dtype == "float16" else (1e30, 1e-30)
    base = {k: v / np.max(np.abs(v)) for k, v in arrays.items()}
    scaled = {"queries": base["queries"] * big, "keys": base["keys"] * small}
    held = {k: v.astype(dtype).astype(np.float64) for k, v in scaled.items()}
    want = ref_info_nce_loss(held["queries"] / big, held["keys"] / small, temperature=0.5)
    for (lib, path), got in run_everywhere(anyloss.info_nce_loss, scaled, dtype, temperature=0.5).items():
        np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps * 10, atol=8 * np.finfo(dtype).eps,
                                   err_msg=f"{lib} {path}")


def test_zero_vectors_give_finite_losses_and_gradients():
    """A zero query or key has cosine 0 with everything: loss log(M) for a
    zero query; the gradients are finite everywhere (torch and jax)."""
    import jax
    import torch

    rng = np.random.default_rng(11)
    q, k = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    q[1], k[2] = 0.0, 0.0
    e = q.copy()
    labels = np.array([0, 0, 1, 1])
    loss = anyloss.info_nce_loss(q, k)
    np.testing.assert_allclose(loss, ref_info_nce_loss(q, k), rtol=1e-12)
    assert loss[1] == pytest.approx(math.log(4))
    assert np.isfinite(anyloss.ntxent_loss(e, labels))
    tq, tk, te = (torch.from_numpy(a.copy()).requires_grad_() for a in (q, k, e))
    anyloss.info_nce_loss(tq, tk, symmetric=True, reduction="sum").backward()
    anyloss.ntxent_loss(te, torch.from_numpy(labels)).backward()
    for t in (tq, tk, te):
        assert torch.isfinite(t.grad).all()
    grads = jax.grad(lambda a, b: anyloss.info_nce_loss(a, b, reduction="sum"), argnums=(0, 1))(q, k)
    grads += (jax.grad(lambda a: anyloss.ntxent_loss(a, jax.numpy.asarray(labels)))(e),)
    assert all(np.isfinite(np.asarray(g)).all() for g in grads)


def test_ntxent_confident_pairs_keep_their_tiny_loss():
    """Two one-hot pairs at temperature 0.02: each pair's loss is
    log(1 + 2 e^-50) = 3.9e-22 (optax rounds it to 0)."""
    e = np.repeat(np.eye(4)[:2], 2, axis=0)
    labels = np.array([0, 0, 1, 1])
    with mp.workdps(60):
        want = float(mp.log1p(2 * mp.exp(-50)))
    for dtype, libs in (("float32", None), ("float64", ("numpy", "torch"))):
        for (lib, path), got in run_everywhere(anyloss.ntxent_loss, {"embeddings": e, "labels": labels}, dtype, libs,
                                               temperature=0.02).items():
            np.testing.assert_allclose(got, want, rtol=20 * np.finfo(dtype).eps, err_msg=f"{lib} {path} {dtype}")


@pytest.mark.parametrize("labels, want", [([0, 1, 2, 3], 0.0), ([5, 5, 5, 5], 0.0)],
                         ids=["no-positive-pair", "no-negative"])
def test_ntxent_without_pairs_or_negatives_is_zero_with_zero_gradient(labels, want):
    """No positive pair: 0 (optax: nan).  One label for all: every pair's
    loss is -log(e^s / e^s) = 0 (as optax), and the gradients are 0, not nan."""
    import jax
    import torch

    e = np.random.default_rng(12).normal(size=(4, 4))
    labels = np.array(labels)
    for (lib, path), got in run_everywhere(anyloss.ntxent_loss, {"embeddings": e, "labels": labels},
                                           "float32").items():
        assert got == want, (lib, path)
    t = torch.from_numpy(e.copy()).requires_grad_()
    anyloss.ntxent_loss(t, torch.from_numpy(labels)).backward()
    np.testing.assert_array_equal(t.grad.numpy(), 0.0)
    g = jax.grad(lambda x: anyloss.ntxent_loss(x, jax.numpy.asarray(labels)))(e)
    np.testing.assert_array_equal(np.asarray(g), 0.0)


def test_small_temperature_does_not_overflow():
    """Temperature 0.005: logits up to 200, whose exp overflows float32; the
    loss is the float64 reference's."""
    arrays = make_info_nce(4, 4, 4)(np.random.default_rng(13))
    held = {k: v.astype(np.float32).astype(np.float64) for k, v in arrays.items()}
    for (lib, path), got in run_everywhere(anyloss.info_nce_loss, arrays, "float32", temperature=0.005).items():
        assert_close(got, ref_info_nce_loss(**held, temperature=0.005), "float32", factor=64)
    e = make_ntxent([0, 0, 1, 1], 4)(np.random.default_rng(14))
    held = e["embeddings"].astype(np.float32).astype(np.float64)
    for (lib, path), got in run_everywhere(anyloss.ntxent_loss, e, "float32", temperature=0.005).items():
        assert_close(got, ref_ntxent_loss(held, e["labels"], 0.005), "float32", factor=64)


# ----------------------------------------------------------------------- bad inputs

_Q, _K = np.ones((4, 3)), np.ones((4, 3))


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(queries=np.ones(3), keys=np.ones(3)), ValueError, ["queries", "matrix", "(3,)"]),
        (dict(queries=_Q, keys=np.ones((4, 5))), ValueError, ["(4, 3)", "(4, 5)", "features"]),
        (dict(queries=_Q, keys=np.ones((2, 3))), ValueError, ["keys", "(2, 3)", "at least 4 rows"]),
        (dict(queries=_Q, keys=np.ones((6, 3)), symmetric=True), ValueError, ["symmetric=True", "(6, 3)"]),
        (dict(queries=_Q, keys=_K, temperature=0.0), ValueError, ["temperature", "0.0"]),
        (dict(queries=_Q, keys=_K, temperature=-1), ValueError, ["temperature"]),
        (dict(queries=_Q, keys=_K, temperature=math.inf), ValueError, ["temperature", "inf"]),
        (dict(queries=_Q, keys=_K, temperature="0.1"), TypeError, ["temperature", "str"]),
        (dict(queries=_Q, keys=_K, reduction="avg"), ValueError, ["'avg'", "'mean'"]),
        (dict(queries=_Q.tolist(), keys=_K), TypeError, ["queries", "list"]),
        (dict(queries=_Q + 1j, keys=_K), TypeError, ["queries", "complex"]),
    ],
)
def test_info_nce_bad_inputs(kwargs, error, words):
    with pytest.raises(error) as info:
        anyloss.info_nce_loss(**kwargs)
    message = str(info.value)
    assert "info_nce_loss" in message
    for w in words:
        assert w in message, message


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(embeddings=_Q, labels=np.array([0.0, 0, 1, 1])), TypeError, ["labels", "integer", "float64"]),
        (dict(embeddings=_Q, labels=np.array([0, 0, 1])), ValueError, ["labels", "(3,)", "(4,)"]),
        (dict(embeddings=np.ones(4), labels=np.array([0, 0, 1, 1])), ValueError, ["embeddings", "matrix"]),
        (dict(embeddings=np.ones((0, 3)), labels=np.zeros(0, dtype=int)), ValueError, ["at least one row"]),
        (dict(embeddings=_Q, labels=np.array([0, 0, 1, 1]), temperature=0), ValueError, ["temperature"]),
        (dict(embeddings=_Q, labels=[0, 0, 1, 1]), TypeError, ["labels", "list"]),
    ],
)
def test_ntxent_bad_inputs(kwargs, error, words):
    with pytest.raises(error) as info:
        anyloss.ntxent_loss(**kwargs)
    message = str(info.value)
    assert "ntxent_loss" in message
    for w in words:
        assert w in message, message


def test_two_libraries_are_refused():
    import torch

    with pytest.raises(TypeError, match="torch"):
        anyloss.info_nce_loss(torch.ones(4, 3), _K)
    with pytest.raises(TypeError, match="labels is a numpy"):
        anyloss.ntxent_loss(torch.ones(4, 3), np.array([0, 0, 1, 1]))


def test_inputs_are_not_changed():
    arrays = SPECS[0].arrays()
    copies = {k: v.copy() for k, v in arrays.items()}
    anyloss.info_nce_loss(**arrays, symmetric=True)
    e = SPECS[3].arrays()
    e_copy = {k: v.copy() for k, v in e.items()}
    anyloss.ntxent_loss(**e)
    for k in arrays:
        np.testing.assert_array_equal(arrays[k], copies[k])
    for k in e:
        np.testing.assert_array_equal(e[k], e_copy[k])
