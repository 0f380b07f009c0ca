"""The losses the benchmark times, their inputs, and each library's own version.

Every case has a name, a function that makes NumPy inputs of the requested
size, the anyloss call, and the peer: the library's own implementation
(``torch.nn.functional``, ``mlx.nn.losses``) or, for JAX and as the NumPy
floor, the same math written in ``jax.numpy`` (compiled with ``jax.jit`` by
the runner).  All losses are reduced with ``'mean'`` so that forward and
forward+backward time the same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import anyloss


@dataclass(frozen=True)
class Case:
    name: str
    shape: Callable[[bool], tuple[int, ...]]
    make: Callable[[np.random.Generator, tuple[int, ...]], dict[str, np.ndarray]]
    ours: Callable[..., Any]
    torch: Callable[..., Any]
    mlx: Callable[..., Any]
    jax: Callable[..., Any]
    # the input differentiated in forward+backward
    wrt: str = "x"
    # whether the case enters the headline geo-mean (forward, and CE forward+backward)
    headline: bool = True


# ------------------------------------------------------------------------- inputs


def _logits(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    n, c = shape
    x = rng.standard_normal((n, c), dtype=np.float32) * 2.0
    y = rng.integers(0, c, size=n).astype(np.int32)
    return {"x": x, "y": y}


def _binary(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    x = rng.standard_normal(shape, dtype=np.float32) * 3.0
    t = (rng.random(shape, dtype=np.float32) < 0.5).astype(np.float32)
    return {"x": x, "y": t}


def _pair(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    x = rng.standard_normal(shape, dtype=np.float32)
    y = rng.standard_normal(shape, dtype=np.float32)
    return {"x": x, "y": y}


def _log_probs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    n, c = shape
    x = rng.standard_normal((n, c), dtype=np.float32) - np.float32(np.log(c))
    y = rng.integers(0, c, size=n).astype(np.int32)
    return {"x": x, "y": y}


def _two_log_probs(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    n, c = shape
    x = rng.standard_normal((n, c), dtype=np.float32) - np.float32(np.log(c))
    t = rng.standard_normal((n, c), dtype=np.float32) - np.float32(np.log(c))
    return {"x": x, "y": t}


def _signed(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    x = rng.standard_normal(shape, dtype=np.float32)
    y = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
    return {"x": x, "y": y}


def _with_vars(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    out = _pair(rng, shape)
    out["v"] = rng.uniform(0.1, 2.0, size=shape).astype(np.float32)
    return out


def _triplets(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {k: rng.standard_normal(shape, dtype=np.float32) for k in ("x", "p", "n")}


def _ranking(rng: np.random.Generator, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    out = _pair(rng, shape)
    out["t"] = _signed(rng, shape)["y"]
    return out


def _ce_shape(quick: bool) -> tuple[int, ...]:
    return (64, 1000) if quick else (4096, 32768)


def _flat_shape(quick: bool) -> tuple[int, ...]:
    return (1 << 14,) if quick else (1 << 24,)


def _embed_shape(quick: bool) -> tuple[int, ...]:
    return (64, 256) if quick else (1 << 14, 1 << 10)


# ------------------------------------------------------------------- peers: torch


def _t():
    import torch.nn.functional as F

    return F


def _torch_ce(x, y):
    return _t().cross_entropy(x, y, reduction="mean")


def _torch_bce(x, y):
    return _t().binary_cross_entropy_with_logits(x, y, reduction="mean")


def _torch_mse(x, y):
    return _t().mse_loss(x, y, reduction="mean")


def _torch_huber(x, y):
    return _t().huber_loss(x, y, delta=1.0, reduction="mean")


def _torch_l1(x, y):
    return _t().l1_loss(x, y, reduction="mean")


def _torch_cos(x, y):
    return _t().cosine_similarity(x, y, dim=1, eps=1e-8).mean()


def _torch_nll(x, y):
    return _t().nll_loss(x, y, reduction="mean")


def _torch_kl(x, t):
    return _t().kl_div(x, t, reduction="batchmean", log_target=True)


def _torch_hinge(x, y):  # no torch.nn.functional equivalent: the same math
    return (1 - x * y).clamp(min=0).mean()


def _torch_smooth_l1(x, y):
    return _t().smooth_l1_loss(x, y, beta=1.0, reduction="mean")


def _torch_log_cosh(x, y):  # no torch.nn.functional equivalent: the same math
    import math

    d = x - y
    return (d + _t().softplus(-2.0 * d) - math.log(2.0)).mean()


def _torch_gaussian(x, y, v):
    return _t().gaussian_nll_loss(x, y, v, eps=1e-6, reduction="mean")


def _torch_triplet(a, p, n):
    return _t().triplet_margin_loss(a, p, n, margin=1.0, p=2, eps=1e-6, reduction="mean")


def _torch_ranking(x1, x2, t):
    return _t().margin_ranking_loss(x1, x2, t, margin=0.0, reduction="mean")


# --------------------------------------------------------------------- peers: mlx


def _m():
    import mlx.nn.losses as L

    return L


def _mlx_ce(x, y):
    return _m().cross_entropy(x, y, reduction="mean")


def _mlx_bce(x, y):
    return _m().binary_cross_entropy(x, y, with_logits=True, reduction="mean")


def _mlx_mse(x, y):
    return _m().mse_loss(x, y, reduction="mean")


def _mlx_huber(x, y):
    return _m().huber_loss(x, y, delta=1.0, reduction="mean")


def _mlx_l1(x, y):
    return _m().l1_loss(x, y, reduction="mean")


def _mlx_cos(x, y):
    return _m().cosine_similarity_loss(x, y, axis=1, eps=1e-8, reduction="mean")


def _mlx_nll(x, y):
    return _m().nll_loss(x, y, reduction="mean")


def _mlx_kl(x, t):
    return _m().kl_div_loss(x, t, reduction="mean")


def _mlx_hinge(x, y):
    return _m().hinge_loss(x, y, reduction="mean")


def _mlx_smooth_l1(x, y):
    return _m().smooth_l1_loss(x, y, beta=1.0, reduction="mean")


def _mlx_log_cosh(x, y):
    return _m().log_cosh_loss(x, y, reduction="mean")


def _mlx_gaussian(x, y, v):
    return _m().gaussian_nll_loss(x, y, v, eps=1e-6, reduction="mean")


def _mlx_triplet(a, p, n):
    return _m().triplet_loss(a, p, n, margin=1.0, p=2, eps=1e-6, reduction="mean")


def _mlx_ranking(x1, x2, t):
    return _m().margin_ranking_loss(x1, x2, t, margin=0.0, reduction="mean")


# ------------------------------------------- peers: the same math in jax.numpy


def _j():
    import jax
    import jax.numpy as jnp

    return jax, jnp


def _jax_ce(x, y):
    jax, jnp = _j()
    lse = jax.nn.logsumexp(x, axis=-1)
    score = jnp.take_along_axis(x, y[:, None], axis=-1)[:, 0]
    return jnp.mean(lse - score)


def _jax_bce(x, y):
    _, jnp = _j()
    return jnp.mean(jnp.maximum(x, 0) - x * y + jnp.log1p(jnp.exp(-jnp.abs(x))))


def _jax_mse(x, y):
    _, jnp = _j()
    return jnp.mean(jnp.square(x - y))


def _jax_huber(x, y):
    _, jnp = _j()
    a = jnp.abs(x - y)
    return jnp.mean(jnp.where(a <= 1.0, 0.5 * a * a, a - 0.5))


def _jax_l1(x, y):
    _, jnp = _j()
    return jnp.mean(jnp.abs(x - y))


def _jax_cos(x, y):
    _, jnp = _j()
    dot = jnp.sum(x * y, axis=1)
    norms = jnp.linalg.norm(x, axis=1) * jnp.linalg.norm(y, axis=1)
    return jnp.mean(dot / jnp.maximum(norms, 1e-8))


def _jax_nll(x, y):
    _, jnp = _j()
    return -jnp.mean(jnp.take_along_axis(x, y[:, None], axis=-1))


def _jax_kl(x, t):
    _, jnp = _j()
    return jnp.mean(jnp.sum(jnp.exp(t) * (t - x), axis=-1))


def _jax_hinge(x, y):
    _, jnp = _j()
    return jnp.mean(jnp.maximum(1 - x * y, 0))


def _jax_smooth_l1(x, y):
    _, jnp = _j()
    a = jnp.abs(x - y)
    return jnp.mean(jnp.where(a < 1.0, 0.5 * a * a, a - 0.5))


def _jax_log_cosh(x, y):
    _, jnp = _j()
    d = x - y
    return jnp.mean(jnp.logaddexp(d, -d) - jnp.log(2.0))


def _jax_gaussian(x, y, v):
    _, jnp = _j()
    v = jnp.maximum(v, 1e-6)
    return jnp.mean(0.5 * (jnp.log(v) + jnp.square(x - y) / v))


def _jax_triplet(a, p, n):
    _, jnp = _j()
    dp = jnp.sqrt(jnp.sum(jnp.square(a - p), axis=-1) + 1e-6)
    dn = jnp.sqrt(jnp.sum(jnp.square(a - n), axis=-1) + 1e-6)
    return jnp.mean(jnp.maximum(dp - dn + 1.0, 0))


def _jax_ranking(x1, x2, t):
    _, jnp = _j()
    return jnp.mean(jnp.maximum(-t * (x1 - x2), 0))


# --------------------------------------------------------------------------- cases

CASES: tuple[Case, ...] = (
    Case(
        "cross_entropy",
        _ce_shape,
        _logits,
        lambda x, y: anyloss.cross_entropy(x, y, reduction="mean"),
        _torch_ce,
        _mlx_ce,
        _jax_ce,
    ),
    Case(
        "binary_cross_entropy",
        _flat_shape,
        _binary,
        lambda x, y: anyloss.binary_cross_entropy(x, y, reduction="mean"),
        _torch_bce,
        _mlx_bce,
        _jax_bce,
    ),
    Case(
        "mse_loss",
        _flat_shape,
        _pair,
        lambda x, y: anyloss.mse_loss(x, y, reduction="mean"),
        _torch_mse,
        _mlx_mse,
        _jax_mse,
    ),
    Case(
        "huber_loss",
        _flat_shape,
        _pair,
        lambda x, y: anyloss.huber_loss(x, y, delta=1.0, reduction="mean"),
        _torch_huber,
        _mlx_huber,
        _jax_huber,
    ),
    Case(
        "cosine_similarity_loss",
        _embed_shape,
        _pair,
        lambda x, y: anyloss.cosine_similarity_loss(x, y, axis=1, reduction="mean"),
        _torch_cos,
        _mlx_cos,
        _jax_cos,
    ),
    Case(
        "l1_loss",
        _flat_shape,
        _pair,
        lambda x, y: anyloss.l1_loss(x, y, reduction="mean"),
        _torch_l1,
        _mlx_l1,
        _jax_l1,
        headline=False,
    ),
    # The other losses, outside the headline geo-mean.
    Case("nll_loss", _ce_shape, _log_probs, lambda x, y: anyloss.nll_loss(x, y, reduction="mean"),
         _torch_nll, _mlx_nll, _jax_nll, headline=False),
    Case("kl_div_loss", _embed_shape, _two_log_probs, lambda x, t: anyloss.kl_div_loss(x, t, reduction="mean"),
         _torch_kl, _mlx_kl, _jax_kl, headline=False),
    Case("hinge_loss", _flat_shape, _signed, lambda x, y: anyloss.hinge_loss(x, y, reduction="mean"),
         _torch_hinge, _mlx_hinge, _jax_hinge, headline=False),
    Case("smooth_l1_loss", _flat_shape, _pair, lambda x, y: anyloss.smooth_l1_loss(x, y, beta=1.0, reduction="mean"),
         _torch_smooth_l1, _mlx_smooth_l1, _jax_smooth_l1, headline=False),
    Case("log_cosh_loss", _flat_shape, _pair, lambda x, y: anyloss.log_cosh_loss(x, y, reduction="mean"),
         _torch_log_cosh, _mlx_log_cosh, _jax_log_cosh, headline=False),
    Case("gaussian_nll_loss", _flat_shape, _with_vars,
         lambda x, y, v: anyloss.gaussian_nll_loss(x, y, v, eps=1e-6, reduction="mean"),
         _torch_gaussian, _mlx_gaussian, _jax_gaussian, headline=False),
    Case("triplet_loss", _embed_shape, _triplets,
         lambda a, p, n: anyloss.triplet_loss(a, p, n, margin=1.0, p=2, eps=1e-6, reduction="mean"),
         _torch_triplet, _mlx_triplet, _jax_triplet, headline=False),
    Case("margin_ranking_loss", _flat_shape, _ranking,
         lambda x1, x2, t: anyloss.margin_ranking_loss(x1, x2, t, margin=0.0, reduction="mean"),
         _torch_ranking, _mlx_ranking, _jax_ranking, headline=False),
)
