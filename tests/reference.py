"""Float64 NumPy references for the 14 losses, written from their formulas.

Each function has the signature of its ``mlx.nn.losses`` namesake and the
same meaning; it shares no code with anyloss.  Floating inputs are promoted to
float64 first, so a test that rounds its inputs to float16 or float32 and
hands the rounded arrays to both anyloss and these functions compares
anyloss against the exact loss of the very values it was given, up to
float64 rounding.  Class indices stay integers.

The formulas are the definitions from the MLX documentation:

- cross entropy: ``logsumexp(x) - score`` with ``score`` the target's logit or
  ``sum(p * x)``, both on ``x - max(x)`` as MLX writes it (so probability
  targets that do not sum exactly to one after rounding are treated the same
  way); with label smoothing ``s``: ``logsumexp - (1 - s) score - s mean(x)``;
- binary cross entropy: ``-(t log p + (1 - t) log(1 - p))``, ``p = sigmoid(x)``
  with logits, each log clipped below at -100 with probabilities;
- and so on, one short function each.

Nothing here aims at speed; the code is meant to be read against the formula.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "binary_cross_entropy",
    "cosine_similarity_loss",
    "cross_entropy",
    "gaussian_nll_loss",
    "hinge_loss",
    "huber_loss",
    "kl_div_loss",
    "l1_loss",
    "log_cosh_loss",
    "margin_ranking_loss",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
    "triplet_loss",
]


def _f64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _reduce(loss: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return np.asarray(np.sum(loss) / loss.size)
    if reduction == "sum":
        return np.asarray(np.sum(loss))
    raise ValueError(f"reference: unknown reduction {reduction!r}")


def _classes_last(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` with ``axis`` moved to the end, so each row ``a[..., :]`` is one distribution."""
    return np.moveaxis(a, axis, -1)


# ---------------------------------------------------------------- classification


def cross_entropy(logits, targets, weights=None, axis=-1, label_smoothing=0.0, reduction="none"):
    x = _classes_last(_f64(logits), axis)
    num_classes = x.shape[-1]
    shifted = x - np.max(x, axis=-1, keepdims=True)
    logsumexp = np.log(np.sum(np.exp(shifted), axis=-1))
    targets = np.asarray(targets)
    if targets.ndim == np.ndim(logits):
        p = _classes_last(_f64(targets), axis)
        score = np.sum(p * shifted, axis=-1)
    else:
        # One-hot rows picked out of the identity matrix: sum(onehot * x) = x[target].
        onehot = np.eye(num_classes)[targets.astype(np.int64)]
        score = np.sum(onehot * shifted, axis=-1)
    s = float(label_smoothing)
    loss = logsumexp - (1.0 - s) * score - s * np.sum(shifted, axis=-1) / num_classes
    if weights is not None:
        loss = loss * _f64(weights)
    return _reduce(loss, reduction)


def binary_cross_entropy(inputs, targets, weights=None, with_logits=True, reduction="mean"):
    x = _f64(inputs)
    t = _f64(targets)
    if with_logits:
        # log sigmoid(x) = -log(1 + e^-x);  log(1 - sigmoid(x)) = -log(1 + e^x)
        log_p = -np.logaddexp(0.0, -x)
        log_1mp = -np.logaddexp(0.0, x)
    else:
        with np.errstate(divide="ignore"):
            log_p = np.maximum(np.log(x), -100.0)
            log_1mp = np.maximum(np.log(1.0 - x), -100.0)
    loss = -(t * log_p + (1.0 - t) * log_1mp)
    if weights is not None:
        loss = loss * _f64(weights)
    return _reduce(loss, reduction)


def nll_loss(inputs, targets, axis=-1, reduction="none"):
    x = _classes_last(_f64(inputs), axis)
    idx = np.asarray(targets).astype(np.int64)
    loss = np.empty(idx.shape)
    for pos in np.ndindex(*idx.shape):
        loss[pos] = -x[pos][idx[pos]]
    return _reduce(loss, reduction)


def kl_div_loss(inputs, targets, axis=-1, reduction="none"):
    x = _f64(inputs)
    t = _f64(targets)
    loss = np.sum(np.exp(t) * (t - x), axis=axis)
    return _reduce(loss, reduction)


def hinge_loss(inputs, targets, reduction="none"):
    loss = np.maximum(0.0, 1.0 - _f64(targets) * _f64(inputs))
    return _reduce(loss, reduction)


# -------------------------------------------------------------------- regression


def l1_loss(predictions, targets, reduction="mean"):
    return _reduce(np.abs(_f64(predictions) - _f64(targets)), reduction)


def mse_loss(predictions, targets, reduction="mean"):
    return _reduce((_f64(predictions) - _f64(targets)) ** 2, reduction)


def smooth_l1_loss(predictions, targets, beta=1.0, reduction="mean"):
    d = np.abs(_f64(predictions) - _f64(targets))
    beta = float(beta)
    if beta == 0.0:
        loss = d  # |d| < 0 never holds: every element takes the linear branch
    else:
        loss = np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta)
    return _reduce(loss, reduction)


def huber_loss(inputs, targets, delta=1.0, reduction="none"):
    a = np.abs(_f64(inputs) - _f64(targets))
    delta = float(delta)
    loss = np.where(a <= delta, 0.5 * a**2, delta * (a - 0.5 * delta))
    return _reduce(loss, reduction)


def log_cosh_loss(inputs, targets, reduction="none"):
    loss = np.log(np.cosh(_f64(inputs) - _f64(targets)))
    return _reduce(loss, reduction)


def gaussian_nll_loss(inputs, targets, vars, full=False, eps=1e-6, reduction="mean"):
    v = np.maximum(_f64(vars), float(eps))
    loss = 0.5 * (np.log(v) + (_f64(targets) - _f64(inputs)) ** 2 / v)
    if full:
        loss = loss + 0.5 * math.log(2.0 * math.pi)
    return _reduce(loss, reduction)


# --------------------------------------------------------------------- embedding


def cosine_similarity_loss(x1, x2, axis=1, eps=1e-8, reduction="none"):
    a = _f64(x1)
    b = _f64(x2)
    dot = np.sum(a * b, axis=axis)
    norms = np.sqrt(np.sum(a * a, axis=axis)) * np.sqrt(np.sum(b * b, axis=axis))
    loss = dot / np.maximum(norms, float(eps))
    return _reduce(loss, reduction)


def triplet_loss(anchors, positives, negatives, axis=-1, p=2, margin=1.0, eps=1e-6, reduction="none"):
    a = _f64(anchors)

    def distance(other):
        return (np.sum(np.abs(a - _f64(other)) ** p, axis=axis) + eps) ** (1.0 / p)

    loss = np.maximum(distance(positives) - distance(negatives) + margin, 0.0)
    return _reduce(loss, reduction)


def margin_ranking_loss(inputs1, inputs2, targets, margin=0.0, reduction="none"):
    loss = np.maximum(0.0, -_f64(targets) * (_f64(inputs1) - _f64(inputs2)) + margin)
    return _reduce(loss, reduction)
