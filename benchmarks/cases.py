"""The losses the benchmark times: their inputs, their sizes, and each library's peer.

A case is one loss: the keyword arguments that anyloss and ``mlx.nn.losses``
share, a function making its NumPy inputs at a shape, the family of sizes it
runs at, and its peer on each library, the call a user would otherwise write:

* PyTorch: ``torch.nn.functional`` (or the two-operation expression where it
  has no such loss),
* JAX: ``optax.losses`` where optax has the loss, else the case's plain
  expression in ``jax.numpy``,
* MLX: ``mlx.nn.losses`` with the same name and arguments as ours,
* NumPy: the case's plain expression in NumPy.

The plain expression is written once against a namespace ``xp`` (NumPy or
``jax.numpy``).  Every loss is reduced with ``'mean'``, so that forward and
backward time the same function; the peers compute the same math.
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import anyloss

Arrays = list[np.ndarray]

# ---------------------------------------------------------------------- sizes

BATCH, MILLION, LARGE = "batch", "1m", "large"
TIERS = (BATCH, MILLION, LARGE)

# Per family, (tier, shape of the first input) in the order they run.  The
# first size of each family is its "one batch" size, the headline of the summary.
SIZES: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    # logits or log-probabilities with class indices; 4096 x 32000 is a batch
    # of 8 sequences of 512 tokens over a 32000-word vocabulary
    "classes": (
        (BATCH, (64, 10)),
        (BATCH, (256, 1000)),
        (BATCH, (4096, 32000)),
        (MILLION, (1024, 1024)),
        (LARGE, (4096, 32768)),
    ),
    # distributions over classes (kl_div_loss)
    "distributions": (
        (BATCH, (64, 10)),
        (BATCH, (256, 1000)),
        (MILLION, (1024, 1024)),
        (LARGE, (16384, 1024)),
    ),
    "elementwise": (
        (BATCH, (256,)),
        (BATCH, (4096,)),
        (MILLION, (1 << 20,)),
        (LARGE, (1 << 24,)),
    ),
    # rows of embeddings, the loss along axis 1
    "embeddings": (
        (BATCH, (64, 128)),
        (BATCH, (256, 768)),
        (MILLION, (1024, 1024)),
        (LARGE, (16384, 1024)),
    ),
}


# --------------------------------------------------------------------- inputs


def _normal(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 1.0) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)


def _signs(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def _classes(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int32)


def logits(rng, shape) -> Arrays:
    return [_normal(rng, shape, 2.0), _classes(rng, shape)]


def _log_softmax(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    x = _normal(rng, shape)
    x -= x.max(axis=-1, keepdims=True)
    x -= np.log(np.exp(x).sum(axis=-1, keepdims=True))
    return np.minimum(x, 0, out=x)  # log-probabilities: at most 0, also after rounding


def log_probs(rng, shape) -> Arrays:
    return [_log_softmax(rng, shape), _classes(rng, shape)]


def two_log_probs(rng, shape) -> Arrays:
    return [_log_softmax(rng, shape), _log_softmax(rng, shape)]


def binary(rng, shape) -> Arrays:
    return [_normal(rng, shape, 3.0), (rng.random(shape) < 0.5).astype(np.float32)]


def pair(rng, shape) -> Arrays:
    return [_normal(rng, shape), _normal(rng, shape)]


def signed(rng, shape) -> Arrays:
    return [_normal(rng, shape), _signs(rng, shape)]


def with_vars(rng, shape) -> Arrays:
    return pair(rng, shape) + [rng.uniform(0.1, 2.0, size=shape).astype(np.float32)]


def ranking(rng, shape) -> Arrays:
    return pair(rng, shape) + [_signs(rng, shape)]


def triplets(rng, shape) -> Arrays:
    return [_normal(rng, shape) for _ in range(3)]


# --------------------------------------------------------------------- peers


@dataclass(frozen=True)
class Peer:
    """What the tables call the peer, and how to get it (importing its library)."""

    label: str
    load: Callable[[], Callable[..., Any]]


def _args(kwargs: dict[str, Any]) -> str:
    """The keyword arguments for a label, but for the default ``reduction='mean'``."""
    shown = [f"{k}={v!r}" for k, v in kwargs.items() if (k, v) != ("reduction", "mean")]
    return f"({', '.join(shown)})" if shown else ""


def torch_f(name: str, **kwargs: Any) -> Peer:
    """``torch.nn.functional.<name>(..., **kwargs)``, by default with ``reduction='mean'``."""
    kwargs.setdefault("reduction", "mean")

    def load():
        import torch.nn.functional as F

        return functools.partial(getattr(F, name), **kwargs)

    return Peer(f"F.{name}{_args(kwargs)}", load)


def torch_expr(label: str, fn: Callable[..., Any]) -> Peer:
    """A torch expression, ``fn(torch, *inputs)``, for a loss torch does not have."""

    def load():
        import torch

        return functools.partial(fn, torch)

    return Peer(label, load)


def optax_loss(name: str, **kwargs: Any) -> Peer:
    """``jnp.mean(optax.losses.<name>(..., **kwargs))``."""

    def load():
        import jax.numpy as jnp
        import optax

        loss = getattr(optax.losses, name)
        return lambda *a: jnp.mean(loss(*a, **kwargs))

    return Peer(f"optax.losses.{name}{_args(kwargs)}", load)


def _expr_peer(expr: Callable[..., Any], module: str, prefix: str) -> Peer:
    """``expr(xp, *inputs)`` with ``xp`` the named module, labelled by its docstring."""

    def load():
        import importlib

        return functools.partial(expr, importlib.import_module(module))

    return Peer(f"{prefix}: {expr.__doc__}", load)


# ------------------------------------------ the plain math, once for NumPy and jax.numpy


def _ce(xp, x, y):
    """mean(logsumexp(x, -1) - x[i, y])"""
    m = xp.max(x, axis=-1, keepdims=True)
    lse = xp.log(xp.sum(xp.exp(x - m), axis=-1)) + m[:, 0]
    return xp.mean(lse - xp.take_along_axis(x, y[:, None], axis=-1)[:, 0])


def _nll(xp, x, y):
    """-mean(x[i, y])"""
    return -xp.mean(xp.take_along_axis(x, y[:, None], axis=-1))


def _bce(xp, x, y):
    """mean(max(x, 0) - x y + log1p(exp(-abs(x))))"""
    return xp.mean(xp.maximum(x, 0) - x * y + xp.log1p(xp.exp(-xp.abs(x))))


def _mse(xp, x, y):
    """mean((x - y)^2)"""
    return xp.mean(xp.square(x - y))


def _l1(xp, x, y):
    """mean(abs(x - y))"""
    return xp.mean(xp.abs(x - y))


def _huber(xp, x, y):  # delta = 1
    """mean(where(abs(x - y) <= 1, (x - y)^2 / 2, abs(x - y) - 1/2))"""
    a = xp.abs(x - y)
    return xp.mean(xp.where(a <= 1.0, 0.5 * a * a, a - 0.5))


def _smooth_l1(xp, x, y):  # beta = 1
    """mean(where(abs(x - y) < 1, (x - y)^2 / 2, abs(x - y) - 1/2))"""
    a = xp.abs(x - y)
    return xp.mean(xp.where(a < 1.0, 0.5 * a * a, a - 0.5))


def _log_cosh(xp, x, y):
    """mean(logaddexp(x - y, y - x) - log 2)"""
    d = x - y
    return xp.mean(xp.logaddexp(d, -d) - math.log(2.0))


def _gaussian_nll(xp, x, y, v):  # eps = 1e-6
    """mean((log v + (x - y)^2 / v) / 2), v = max(v, eps)"""
    v = xp.maximum(v, 1e-6)
    return xp.mean(0.5 * (xp.log(v) + xp.square(x - y) / v))


def _hinge(xp, x, y):
    """mean(max(1 - x y, 0))"""
    return xp.mean(xp.maximum(1.0 - x * y, 0))


def _margin_ranking(xp, x1, x2, t):  # margin = 0
    """mean(max(-t (x1 - x2), 0))"""
    return xp.mean(xp.maximum(-t * (x1 - x2), 0))


def _kl_div(xp, x, t):
    """mean(sum(exp(t) (t - x), -1))"""
    return xp.mean(xp.sum(xp.exp(t) * (t - x), axis=-1))


def _cosine(xp, x, y):  # eps = 1e-8
    """mean(sum(x y, 1) / max(norm(x) norm(y), eps))"""
    norms = xp.sqrt(xp.sum(x * x, axis=1)) * xp.sqrt(xp.sum(y * y, axis=1))
    return xp.mean(xp.sum(x * y, axis=1) / xp.maximum(norms, 1e-8))


def _triplet(xp, a, p, n):  # p = 2, margin = 1, eps = 1e-6
    """mean(max(d(a, p) - d(a, n) + 1, 0)), d = sqrt(sum(diff^2) + eps)"""
    dp = xp.sqrt(xp.sum(xp.square(a - p), axis=-1) + 1e-6)
    dn = xp.sqrt(xp.sum(xp.square(a - n), axis=-1) + 1e-6)
    return xp.mean(xp.maximum(dp - dn + 1.0, 0))


# ---------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    name: str
    sizes: str  # a key of SIZES
    make: Callable[[np.random.Generator, tuple[int, ...]], Arrays]
    expr: Callable[..., Any]  # expr(xp, *inputs): the NumPy peer, and JAX's without optax
    torch: Peer
    optax: Peer | None = None
    # keyword arguments of anyloss.<name> and mlx.nn.losses.<name>
    params: dict[str, Any] = field(default_factory=dict)
    # our call, where it is not anyloss.<name>(*inputs, **params) (a loss's options)
    call: Callable[..., Any] | None = None

    def ours(self) -> Callable[..., Any]:
        if self.call is not None:
            return self.call
        fn = getattr(anyloss, self.name)
        if "reduction" not in inspect.signature(fn).parameters:  # a scalar already (ntxent_loss)
            return functools.partial(fn, **self.params)
        return functools.partial(fn, **self.params, reduction="mean")

    def peer(self, library: str) -> Peer:
        if library == "torch":
            return self.torch
        if library == "mlx":
            if not _mlx_has(self.name):  # a loss beyond MLX's: the plain expression on mlx.core
                return _expr_peer(self.expr, "mlx.core", "mx")
            return Peer(f"mlx.nn.losses.{self.name}{_args(self.params)}", self._mlx)
        if library == "jax":
            if self.optax is not None and _has("optax"):
                return self.optax
            return _expr_peer(self.expr, "jax.numpy", "jnp")
        return _expr_peer(self.expr, "numpy", "np")

    def _mlx(self) -> Callable[..., Any]:
        import mlx.nn.losses as losses

        return functools.partial(getattr(losses, self.name), **self.params, reduction="mean")


def _mlx_has(name: str) -> bool:
    """Whether ``mlx.nn.losses`` has the loss (without MLX, the peer's load reports it)."""
    try:
        import mlx.nn.losses as losses
    except ImportError:
        return True
    return hasattr(losses, name)


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


CASES: tuple[Case, ...] = (
    Case("cross_entropy", "classes", logits, _ce, torch_f("cross_entropy"),
         optax_loss("softmax_cross_entropy_with_integer_labels")),
    Case("nll_loss", "classes", log_probs, _nll, torch_f("nll_loss")),
    Case("binary_cross_entropy", "elementwise", binary, _bce,
         torch_f("binary_cross_entropy_with_logits"), optax_loss("sigmoid_binary_cross_entropy")),
    Case("mse_loss", "elementwise", pair, _mse, torch_f("mse_loss"), optax_loss("squared_error")),
    Case("l1_loss", "elementwise", pair, _l1, torch_f("l1_loss")),
    Case("huber_loss", "elementwise", pair, _huber, torch_f("huber_loss", delta=1.0),
         optax_loss("huber_loss", delta=1.0), {"delta": 1.0}),
    Case("smooth_l1_loss", "elementwise", pair, _smooth_l1, torch_f("smooth_l1_loss", beta=1.0),
         params={"beta": 1.0}),
    Case("log_cosh_loss", "elementwise", pair, _log_cosh,
         torch_expr("torch.log(torch.cosh(x - y))", lambda t, x, y: t.log(t.cosh(x - y)).mean()),
         optax_loss("log_cosh")),
    Case("gaussian_nll_loss", "elementwise", with_vars, _gaussian_nll,
         torch_f("gaussian_nll_loss", eps=1e-6), params={"eps": 1e-6}),
    Case("hinge_loss", "elementwise", signed, _hinge,
         torch_expr("torch.clamp(1 - x * y, min=0)", lambda t, x, y: t.clamp(1 - x * y, min=0).mean()),
         optax_loss("hinge_loss")),
    Case("margin_ranking_loss", "elementwise", ranking, _margin_ranking,
         torch_f("margin_ranking_loss", margin=0.0), params={"margin": 0.0}),
    Case("kl_div_loss", "distributions", two_log_probs, _kl_div,
         # 'batchmean' of a 2-d input: the mean over rows of the sum over classes
         torch_f("kl_div", log_target=True, reduction="batchmean"),
         optax_loss("kl_divergence_with_log_targets")),
    Case("cosine_similarity_loss", "embeddings", pair, _cosine,
         torch_expr("F.cosine_similarity", lambda t, x, y: t.nn.functional.cosine_similarity(
             x, y, dim=1, eps=1e-8).mean()),
         # optax clips each squared norm at epsilon, MLX the product of the norms
         optax_loss("cosine_similarity", axis=1, epsilon=1e-16), {"axis": 1, "eps": 1e-8}),
    Case("triplet_loss", "embeddings", triplets, _triplet,
         # PyTorch adds eps to the difference, MLX and optax inside the root
         torch_f("triplet_margin_loss", margin=1.0, p=2, eps=1e-6),
         optax_loss("triplet_margin_loss", margin=1.0, eps=1e-6),
         {"margin": 1.0, "p": 2, "eps": 1e-6}),
)


# ------------------------------------------------- losses beyond MLX's: contrastive, pairs, counts

SIZES["contrastive"] = (  # a batch of embeddings against every other row of it
    (BATCH, (64, 128)),
    (BATCH, (256, 768)),
    (MILLION, (1024, 1024)),
    (LARGE, (4096, 1024)),
)


def queries_keys(rng, shape) -> Arrays:
    q = _normal(rng, shape)
    return [q, (0.8 * q + _normal(rng, shape, 0.6)).astype(np.float32)]


def views(rng, shape) -> Arrays:
    """Embeddings in pairs of equal labels (two views per example)."""
    return [_normal(rng, shape), (np.arange(shape[0]) // 2).astype(np.int32)]


def labelled_pairs(rng, shape) -> Arrays:
    return pair(rng, shape) + [_signs(rng, shape[:1])]


def distances(rng, shape) -> Arrays:
    return [np.abs(_normal(rng, shape, 1.5)), _signs(rng, shape)]


def counts(rng, shape) -> Arrays:
    x = _normal(rng, shape, 0.5)
    return [x, rng.poisson(np.exp(x)).astype(np.float32)]


def relative(rng, shape) -> Arrays:
    return [_normal(rng, shape), (rng.uniform(0.5, 2.0, size=shape) * _signs(rng, shape)).astype(np.float32)]


def positive_pair(rng, shape) -> Arrays:
    return [rng.uniform(0.0, 10.0, size=shape).astype(np.float32) for _ in range(2)]


def _unit(xp, x):
    return x / xp.sqrt(xp.sum(x * x, axis=1, keepdims=True))


def _info_nce(xp, q, k):  # temperature = 0.07
    """mean(logsumexp(s, 1) - s_ii), s = normalize(q) @ normalize(k).T / 0.07"""
    qn, kn = _unit(xp, q), _unit(xp, k)
    s = xp.matmul(qn, kn.T) / 0.07
    m = xp.max(s, axis=1, keepdims=True)
    lse = xp.log(xp.sum(xp.exp(s - m), axis=1)) + m[:, 0]
    return xp.mean(lse - xp.sum(qn * kn, axis=1) / 0.07)


def _torch_info_nce(t, q, k):
    F = t.nn.functional
    s = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / 0.07
    return F.cross_entropy(s, t.arange(len(q), device=q.device))


def _ntxent(xp, e, labels):  # temperature = 0.07
    """optax's ntxent: mean over positive pairs of log(e^s_ij + sum_neg e^s_ik) - s_ij"""
    u = _unit(xp, e)
    s = xp.matmul(u, u.T) / 0.07
    same = labels[:, None] == labels[None, :]
    positive, negative = same & ~(xp.eye(e.shape[0]) > 0), ~same
    m = xp.max(s, axis=1, keepdims=True)
    ex = xp.exp(s - m)
    neg = xp.sum(xp.where(negative, ex, 0.0), axis=1, keepdims=True)
    return xp.sum(xp.where(positive, xp.log(ex + neg) - (s - m), 0.0)) / xp.sum(positive)


def _torch_ntxent(t, e, labels):
    u = t.nn.functional.normalize(e, dim=1)
    s = u @ u.T / 0.07
    same = labels[:, None] == labels[None, :]
    positive = same & ~t.eye(len(e), dtype=t.bool, device=e.device)
    m = s.amax(dim=1, keepdim=True)
    ex = t.exp(s - m)
    neg = t.where(~same, ex, 0.0).sum(dim=1, keepdim=True)
    return t.where(positive, t.log(ex + neg) - (s - m), 0.0).sum() / positive.sum()


def _cosine_embedding(xp, x1, x2, y):  # margin = 0
    """mean(where(y == 1, 1 - cos, max(cos, 0)))"""
    cos = _cosine_rows(xp, x1, x2)
    return xp.mean(xp.where(y == 1, 1.0 - cos, xp.maximum(cos, 0.0)))


def _cosine_rows(xp, x, y):
    norms = xp.sqrt(xp.sum(x * x, axis=1)) * xp.sqrt(xp.sum(y * y, axis=1))
    return xp.sum(x * y, axis=1) / xp.maximum(norms, 1e-8)


def _hinge_embedding(xp, x, y):  # margin = 1
    """mean(where(y == 1, x, max(0, 1 - x)))"""
    return xp.mean(xp.where(y == 1, x, xp.maximum(1.0 - x, 0.0)))


def _poisson_nll(xp, x, t):
    """mean(exp(x) - t x)"""
    return xp.mean(xp.exp(x) - t * x)


def _js_div(xp, x, t):
    """mean over rows of sum(p (x - log m) + q (t - log m)) / 2, log m = logaddexp(x, t) - log 2"""
    log_m = xp.logaddexp(x, t) - math.log(2.0)
    return xp.mean(0.5 * xp.sum(xp.exp(x) * (x - log_m) + xp.exp(t) * (t - log_m), axis=-1))


def _torch_js_div(t, x, y):
    F = t.nn.functional
    log_m = t.logaddexp(x, y) - math.log(2.0)
    return 0.5 * (F.kl_div(log_m, x, reduction="batchmean", log_target=True)
                  + F.kl_div(log_m, y, reduction="batchmean", log_target=True))


def _mape(xp, p, t):
    """mean(100 abs(t - p) / max(abs(t), 1e-7))"""
    return xp.mean(100.0 * xp.abs(t - p) / xp.maximum(xp.abs(t), 1e-7))


def _msle(xp, p, t):
    """mean((log1p(max(p, 1e-7)) - log1p(max(t, 1e-7)))^2)"""
    return xp.mean(xp.square(xp.log1p(xp.maximum(p, 1e-7)) - xp.log1p(xp.maximum(t, 1e-7))))


CASES += (
    Case("info_nce_loss", "contrastive", queries_keys, _info_nce,
         torch_expr("F.cross_entropy(normalize(q) @ normalize(k).T / 0.07, arange)", _torch_info_nce)),
    Case("ntxent_loss", "contrastive", views, _ntxent,
         torch_expr("optax's ntxent in torch", _torch_ntxent), optax_loss("ntxent", temperature=0.07)),
    Case("cosine_embedding_loss", "embeddings", labelled_pairs, _cosine_embedding,
         torch_f("cosine_embedding_loss", margin=0.0)),
    Case("hinge_embedding_loss", "elementwise", distances, _hinge_embedding,
         torch_f("hinge_embedding_loss", margin=1.0)),
    Case("poisson_nll_loss", "elementwise", counts, _poisson_nll,
         torch_f("poisson_nll_loss", log_input=True, full=False)),
    Case("js_div_loss", "distributions", two_log_probs, _js_div,
         torch_expr("two F.kl_div(log m, .., log_target=True)", _torch_js_div)),
    Case("mape_loss", "elementwise", relative, _mape,
         torch_expr("(100 * abs(t - p) / clamp(abs(t), 1e-7)).mean()",
                    lambda t, p, y: (100.0 * (y - p).abs() / y.abs().clamp(min=1e-7)).mean())),
    Case("msle_loss", "elementwise", positive_pair, _msle,
         torch_expr("F.mse_loss(log1p(clamp(p, 1e-7)), log1p(clamp(t, 1e-7)))",
                    lambda t, p, y: t.nn.functional.mse_loss(t.log1p(p.clamp(min=1e-7)), t.log1p(y.clamp(min=1e-7))))),
)


# ------------------------------------------- losses beyond MLX's: focal, poly-1, margins, Dice

SIZES["labels"] = (  # several yes/no labels per example (multilabel_soft_margin_loss)
    (BATCH, (64, 10)),
    (BATCH, (256, 1000)),
    (MILLION, (1024, 1024)),
    (LARGE, (16384, 1024)),
)
SIZES["masks"] = (  # channels-last segmentation logits (N, H, W, C)
    (BATCH, (4, 32, 32, 2)),
    (BATCH, (8, 64, 64, 4)),
    (MILLION, (16, 128, 128, 4)),
    (LARGE, (16, 256, 256, 16)),
)


def multilabel(rng, shape) -> Arrays:
    return [_normal(rng, shape, 2.0), (rng.random(shape) < 0.3).astype(np.float32)]


def masks(rng, shape) -> Arrays:
    """Logits and one-hot targets (optax's dice_loss takes one-hot targets)."""
    x = _normal(rng, shape, 2.0)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    return [x, np.eye(shape[-1], dtype=np.float32)[labels]]


def _softplus(xp, z):
    return xp.maximum(z, 0.0) + xp.log1p(xp.exp(-xp.abs(z)))


def _sigmoid_focal(xp, x, t):  # alpha = 0.25, gamma = 2
    """torchvision's: mean(alpha_t (1 - p_t)^2 BCE), p = sigmoid(x)"""
    p = 1.0 / (1.0 + xp.exp(-x))
    ce = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
    p_t = p * t + (1 - p) * (1 - t)
    return xp.mean((0.25 * t + 0.75 * (1 - t)) * ce * (1 - p_t) ** 2)


def _torch_sigmoid_focal(t, x, y):
    p = t.sigmoid(x)
    ce = t.nn.functional.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    return ((0.25 * y + 0.75 * (1 - y)) * ce * (1 - p_t) ** 2).mean()


def _log_p_y(xp, x, y):
    m = xp.max(x, axis=-1, keepdims=True)
    lse = xp.log(xp.sum(xp.exp(x - m), axis=-1)) + m[:, 0]
    return xp.take_along_axis(x, y[:, None], axis=-1)[:, 0] - lse


def _softmax_focal(xp, x, y):  # gamma = 2
    """mean(-(1 - p_y)^2 log p_y)"""
    lp = _log_p_y(xp, x, y)
    return xp.mean(-((1 - xp.exp(lp)) ** 2) * lp)


def _torch_softmax_focal(t, x, y):
    lp = t.log_softmax(x, dim=-1).gather(1, y[:, None].long())[:, 0]
    return (-((1 - lp.exp()) ** 2) * lp).mean()


def _poly1(xp, x, y):  # epsilon = 2
    """mean(-log p_y + 2 (1 - p_y))"""
    lp = _log_p_y(xp, x, y)
    return xp.mean(-lp + 2.0 * (1 - xp.exp(lp)))


def _torch_poly1(t, x, y):
    ce = t.nn.functional.cross_entropy(x, y.long(), reduction="none")
    return (ce + 2.0 * (1 - t.exp(-ce))).mean()


def _dice(xp, x, t):  # alpha = beta = 1/2, smooth = 1
    """mean over samples and classes of 1 - (TP + 1) / (TP + (FP + FN) / 2 + 1), softmax inputs"""
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    p = e / xp.sum(e, axis=-1, keepdims=True)
    tp, ps, ts = (xp.sum(v, axis=(1, 2)) for v in (p * t, p, t))
    return xp.mean(1.0 - (tp + 1.0) / (tp + 0.5 * (ps - tp) + 0.5 * (ts - tp) + 1.0))


def _torch_dice(t, x, y):
    p = t.softmax(x, dim=-1)
    tp, ps, ts = (p * y).sum(dim=(1, 2)), p.sum(dim=(1, 2)), y.sum(dim=(1, 2))
    return (1.0 - (tp + 1.0) / (tp + 0.5 * (ps - tp) + 0.5 * (ts - tp) + 1.0)).mean()


def _multi_margin(xp, x, y):  # p = 1, margin = 1
    """mean(sum_{i != y} max(0, 1 - x_y + x_i) / C)"""
    x_y = xp.take_along_axis(x, y[:, None], axis=-1)
    hinge = xp.maximum(1.0 - x_y + x, 0.0)
    return xp.mean((xp.sum(hinge, axis=-1) - 1.0) / x.shape[-1])


def _soft_margin(xp, x, y):
    """mean(softplus(-y x))"""
    return xp.mean(_softplus(xp, -y * x))


def _multilabel_soft_margin(xp, x, t):
    """mean over rows of mean_c(t softplus(-x) + (1 - t) softplus(x))"""
    return xp.mean(xp.mean(t * _softplus(xp, -x) + (1 - t) * _softplus(xp, x), axis=-1))


def _squared_hinge(xp, x, y):
    """mean(max(1 - y x, 0)^2)"""
    return xp.mean(xp.square(xp.maximum(1.0 - x * y, 0)))


CASES += (
    Case("sigmoid_focal_loss", "elementwise", binary, _sigmoid_focal,
         torch_expr("torchvision.ops.sigmoid_focal_loss's formula", _torch_sigmoid_focal),
         optax_loss("sigmoid_focal_loss", alpha=0.25, gamma=2.0)),
    Case("softmax_focal_loss", "classes", logits, _softmax_focal,
         torch_expr("-(1 - p) ** 2 * log_p, log_p = log_softmax(x).gather(y)", _torch_softmax_focal)),
    Case("poly1_cross_entropy", "classes", logits, _poly1,
         torch_expr("ce + 2 (1 - exp(-ce)), ce = F.cross_entropy", _torch_poly1)),
    Case("dice_loss", "masks", masks, _dice,
         torch_expr("the Dice loss of softmax(x) in torch", _torch_dice), optax_loss("dice_loss")),
    Case("multi_margin_loss", "classes", logits, _multi_margin, torch_f("multi_margin_loss")),
    Case("soft_margin_loss", "elementwise", signed, _soft_margin, torch_f("soft_margin_loss")),
    Case("multilabel_soft_margin_loss", "labels", multilabel, _multilabel_soft_margin,
         torch_f("multilabel_soft_margin_loss")),
    Case("squared_hinge_loss", "elementwise", signed, _squared_hinge,
         torch_expr("(F.relu(1 - y * x) ** 2).mean()",
                    lambda t, x, y: (t.nn.functional.relu(1 - y * x) ** 2).mean())),
)


# ---------------------------------------------------------------- losses over sequences

SIZES["sequences"] = (  # logits (N, T, C) of N sequences of T frames over C classes, 30 labels each
    (BATCH, (16, 128, 32)),
    (MILLION, (32, 256, 128)),
)
CTC_LABELS = 30


def sequences(rng, shape) -> Arrays:
    """Logits, padded labels (no blank), all frames, 10 to 30 labels per sequence."""
    n, t, c = shape
    return [_normal(rng, shape), rng.integers(1, c, (n, CTC_LABELS)), np.full(n, t),
            rng.integers(10, CTC_LABELS + 1, n)]


def _no_plain_ctc(xp, *arrays):
    """none: no CTC in the library, and no short plain expression of it"""
    raise NotImplementedError(f"{xp.__name__} has no CTC loss to compare with")


def _torch_ctc(t, x, y, frames, lengths):
    return t.nn.functional.ctc_loss(t.log_softmax(x, -1).transpose(0, 1), y, frames, lengths)


def _optax_ctc() -> Callable[..., Any]:
    import jax.numpy as jnp
    import optax

    def loss(x, y, frames, lengths):
        t, s = x.shape[1], y.shape[1]
        logit_paddings = (jnp.arange(t) >= frames[:, None]).astype(x.dtype)
        label_paddings = (jnp.arange(s) >= lengths[:, None]).astype(x.dtype)
        return jnp.mean(optax.ctc_loss(x, logit_paddings, y, label_paddings))

    return loss


CASES += (
    Case("ctc_loss", "sequences", sequences, _no_plain_ctc,
         torch_expr("F.ctc_loss(log_softmax(x).transpose(0, 1), ...)", _torch_ctc),
         Peer("optax.ctc_loss (paddings from the lengths)", _optax_ctc)),
)


# ------------------------------------------- the training options against their peers

PAD = -100  # PyTorch's default ignore_index


def padded_logits(rng, shape) -> Arrays:
    """Logits, class indices with one row in eight padding, and class weights."""
    x, y = logits(rng, shape)
    y[::8] = PAD
    return [x, y, rng.uniform(0.5, 2.0, size=shape[-1:]).astype(np.float32)]


def padded_log_probs(rng, shape) -> Arrays:
    x, y, w = padded_logits(rng, shape)
    return [_log_softmax(rng, shape), y, w]


def binary_pos_weight(rng, shape) -> Arrays:
    return binary(rng, shape) + [np.array(3.0, dtype=np.float32)]


def _kept(xp, y, w):
    keep = y != PAD
    safe = xp.where(keep, y, xp.zeros_like(y))
    return safe, xp.where(keep, xp.take(w, safe), xp.zeros_like(w[:1]))


def _ce_options(xp, x, y, w):
    """sum(w[y] (logsumexp(x) - x[y]) over rows kept) / sum(w[y] over rows kept)"""
    safe, wy = _kept(xp, y, w)
    m = xp.max(x, axis=-1, keepdims=True)
    lse = xp.log(xp.sum(xp.exp(x - m), axis=-1)) + m[:, 0]
    rows = lse - xp.take_along_axis(x, safe[:, None], axis=-1)[:, 0]
    return xp.sum(wy * rows) / xp.sum(wy)


def _nll_options(xp, x, y, w):
    """-sum(w[y] x[y] over rows kept) / sum(w[y] over rows kept)"""
    safe, wy = _kept(xp, y, w)
    return -xp.sum(wy * xp.take_along_axis(x, safe[:, None], axis=-1)[:, 0]) / xp.sum(wy)


def _bce_pos_weight(xp, x, y, w):
    """mean((1 - y) x + (1 + (w - 1) y) (log1p(exp(-abs(x))) + max(-x, 0)))"""
    return xp.mean((1 - y) * x + (1 + (w - 1) * y) * (xp.log1p(xp.exp(-xp.abs(x))) + xp.maximum(-x, 0)))


def _torch_ce_options(t, x, y, w):
    return t.nn.functional.cross_entropy(x, y.long(), weight=w, ignore_index=PAD)


def _torch_nll_options(t, x, y, w):
    return t.nn.functional.nll_loss(x, y.long(), weight=w, ignore_index=PAD)


def _torch_bce_pos_weight(t, x, y, w):
    return t.nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=w)


CASES += (
    Case("cross_entropy+class_weights+ignore_index", "classes", padded_logits, _ce_options,
         torch_expr("F.cross_entropy(weight=w, ignore_index=-100)", _torch_ce_options),
         call=lambda x, y, w: anyloss.cross_entropy(
             x, y, reduction="mean", class_weights=w, ignore_index=PAD)),
    Case("nll_loss+class_weights+ignore_index", "classes", padded_log_probs, _nll_options,
         torch_expr("F.nll_loss(weight=w, ignore_index=-100)", _torch_nll_options),
         call=lambda x, y, w: anyloss.nll_loss(x, y, reduction="mean", class_weights=w, ignore_index=PAD)),
    Case("binary_cross_entropy+pos_weight", "elementwise", binary_pos_weight, _bce_pos_weight,
         torch_expr("F.binary_cross_entropy_with_logits(pos_weight=w)", _torch_bce_pos_weight),
         call=lambda x, y, w: anyloss.binary_cross_entropy(x, y, pos_weight=w)),
)
