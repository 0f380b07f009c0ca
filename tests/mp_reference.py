"""High-precision references for the 14 losses, computed with mpmath.

Every input element is converted exactly (a float16, bfloat16, float32 or
float64 value is a dyadic rational, and ``mpmath.mpf(float(v))`` keeps it
exactly), and the loss is evaluated from the formula at ``DPS`` significant
digits.  The result is an ``mpf`` (reduced) or a NumPy object array of ``mpf``
(``reduction='none'``), so a test can measure the error of a float result
without rounding the expected value first.

The formulas are the definitions of ``mlx.nn.losses`` (see DESIGN.md), with
the conventions anyloss documents where MLX's own arithmetic gives NaN:
``0 * log 0 = 0`` (a zero coefficient times an infinite logarithm is 0) and
the probability clip of binary cross entropy at ``log = -100``.  Scalar
parameters (``eps``, ``delta``, ...) are taken as the Python floats given.
"""

from __future__ import annotations

import mpmath as mp
import numpy as np

DPS = 60

NEG_INF = mp.ninf


def _mp(a) -> np.ndarray:
    """A NumPy array of numbers as an object array of exact ``mpf``."""
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    for idx in np.ndindex(a.shape):
        v = a[idx]
        out[idx] = mp.mpf(float(v)) if a.dtype.kind == "f" else int(v)
    return out


def _mul0(coefficient, value):
    """``coefficient * value`` with ``0 * anything = 0`` (the 0 log 0 convention)."""
    return mp.mpf(0) if coefficient == 0 else coefficient * value


def _reduce(loss: np.ndarray, reduction: str):
    if reduction == "none":
        return loss
    total = mp.fsum(loss.ravel().tolist()) if loss.size else mp.mpf(0)
    return total / loss.size if reduction == "mean" else total


def _lines(a: np.ndarray, axis: int):
    """Iterate over the 1-d lines of ``a`` along ``axis``: (index of the line, values)."""
    moved = np.moveaxis(a, axis, -1)
    for idx in np.ndindex(moved.shape[:-1]):
        yield idx, list(moved[idx])


def _per_line(a: np.ndarray, axis: int, fn, *others: np.ndarray) -> np.ndarray:
    moved = [np.moveaxis(o, axis, -1) for o in others]
    shape = np.moveaxis(a, axis, -1).shape[:-1]
    out = np.empty(shape, dtype=object)
    for idx, line in _lines(a, axis):
        out[idx] = fn(line, *[list(m[idx]) for m in moved])
    return out


# ------------------------------------------------------------------------ the losses


def binary_cross_entropy(inputs, targets, weights=None, with_logits=True, reduction="mean"):
    with mp.workdps(DPS):
        x, t = _mp(inputs), _mp(targets)
        out = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(x.shape):
            xi, ti = x[idx], mp.mpf(t[idx])
            if with_logits:
                # log sigmoid(x) = -log1p(exp(-x)); log(1 - sigmoid(x)) = log sigmoid(-x)
                log_p = -mp.log1p(mp.exp(-xi)) if xi != mp.ninf else mp.ninf
                log_q = -mp.log1p(mp.exp(xi)) if xi != mp.inf else mp.ninf
            else:
                log_p = max(mp.log(xi), mp.mpf(-100)) if xi > 0 else mp.mpf(-100)
                log_q = max(mp.log1p(-xi), mp.mpf(-100)) if xi < 1 else mp.mpf(-100)
            out[idx] = -(_mul0(ti, log_p) + _mul0(1 - ti, log_q))
        if weights is not None:
            out = out * _mp(weights)
        return _reduce(out, reduction)


def _logsumexp(values):
    m = max(values)
    if m == mp.ninf:
        return mp.ninf
    return m + mp.log(mp.fsum(mp.exp(v - m) for v in values))


def cross_entropy(logits, targets, weights=None, axis=-1, label_smoothing=0.0, reduction="none"):
    with mp.workdps(DPS):
        x = _mp(logits)
        ax = axis % x.ndim
        probabilities = np.ndim(targets) == x.ndim
        s = mp.mpf(label_smoothing)

        def line_loss(z, target):
            m = max(z)
            z = [v - m for v in z]  # on x - max(x), as MLX
            lse = _logsumexp(z)
            if probabilities:
                score = mp.fsum(_mul0(mp.mpf(p), v) for p, v in zip(target, z))
            else:
                score = z[target]
            if s > 0:
                return lse - (1 - s) * score - s * mp.fsum(z) / len(z)
            return lse - score

        if probabilities:
            out = _per_line(x, ax, line_loss, _mp(targets))
        else:
            moved = np.moveaxis(x, ax, -1)
            y = np.asarray(targets)
            out = np.empty(moved.shape[:-1], dtype=object)
            for idx in np.ndindex(out.shape):
                out[idx] = line_loss(list(moved[idx]), int(y[idx]))
        if weights is not None:
            out = out * _mp(weights)
        return _reduce(out, reduction)


def nll_loss(inputs, targets, axis=-1, reduction="none"):
    with mp.workdps(DPS):
        x = np.moveaxis(_mp(inputs), axis % np.ndim(inputs), -1)
        y = np.asarray(targets)
        out = np.empty(x.shape[:-1], dtype=object)
        for idx in np.ndindex(out.shape):
            out[idx] = -x[idx][int(y[idx])]
        return _reduce(out, reduction)


def kl_div_loss(inputs, targets, axis=-1, reduction="none"):
    with mp.workdps(DPS):
        x, t = _mp(inputs), _mp(targets)

        def line(tl, xl):
            return mp.fsum(_mul0(mp.exp(ti), ti - xi) for ti, xi in zip(tl, xl))

        out = _per_line(t, axis % t.ndim, line, x)
        return _reduce(out, reduction)


def hinge_loss(inputs, targets, reduction="none"):
    with mp.workdps(DPS):
        x, y = _mp(inputs), _mp(targets)
        out = np.empty(x.shape, dtype=object)
        for idx in np.ndindex(x.shape):
            out[idx] = max(1 - x[idx] * y[idx], mp.mpf(0))
        return _reduce(out, reduction)


def _elementwise(fn, reduction, *arrays):
    with mp.workdps(DPS):
        converted = [_mp(a) for a in arrays]
        out = np.empty(converted[0].shape, dtype=object)
        for idx in np.ndindex(out.shape):
            out[idx] = fn(*[c[idx] for c in converted])
        return _reduce(out, reduction)


def l1_loss(predictions, targets, reduction="mean"):
    return _elementwise(lambda x, y: abs(x - y), reduction, predictions, targets)


def mse_loss(predictions, targets, reduction="mean"):
    return _elementwise(lambda x, y: (x - y) ** 2, reduction, predictions, targets)


def smooth_l1_loss(predictions, targets, beta=1.0, reduction="mean"):
    b = mp.mpf(beta)

    def fn(x, y):
        d = abs(x - y)
        return d * d / (2 * b) if d < b else d - b / 2

    return _elementwise(fn, reduction, predictions, targets)


def huber_loss(inputs, targets, delta=1.0, reduction="none"):
    dl = mp.mpf(delta)

    def fn(x, y):
        a = abs(x - y)
        return a * a / 2 if a <= dl else dl * (a - dl / 2)

    return _elementwise(fn, reduction, inputs, targets)


def log_cosh_loss(inputs, targets, reduction="none"):
    # log cosh a = log1p(2 sinh(a/2)^2): the same number, without needing
    # extra digits to resolve cosh(a) = 1 + tiny.
    return _elementwise(
        lambda x, y: mp.log1p(2 * mp.sinh((x - y) / 2) ** 2), reduction, inputs, targets
    )


def gaussian_nll_loss(inputs, targets, vars, full=False, eps=1e-6, reduction="mean"):
    floor = mp.mpf(eps)

    def fn(x, y, v):
        v = max(v, floor)
        loss = (mp.log(v) + (y - x) ** 2 / v) / 2
        return loss + mp.log(2 * mp.pi) / 2 if full else loss

    return _elementwise(fn, reduction, inputs, targets, vars)


def cosine_similarity_loss(x1, x2, axis=1, eps=1e-8, reduction="none"):
    with mp.workdps(DPS):
        a, b = _mp(x1), _mp(x2)

        def line(u, v):
            dot = mp.fsum(p * q for p, q in zip(u, v))
            norms = mp.sqrt(mp.fsum(p * p for p in u)) * mp.sqrt(mp.fsum(q * q for q in v))
            if max(norms, mp.mpf(eps)) == 0:
                return mp.mpf(0)  # a zero vector with eps = 0: anyloss's convention
            return dot / max(norms, mp.mpf(eps))

        out = _per_line(a, axis % a.ndim, line, b)
        return _reduce(out, reduction)


def triplet_loss(anchors, positives, negatives, axis=-1, p=2, margin=1.0, eps=1e-6, reduction="none"):
    with mp.workdps(DPS):
        a, pos, neg = _mp(anchors), _mp(positives), _mp(negatives)
        degree = mp.mpf(p)

        def dist(u, v):
            return (mp.fsum(abs(x - y) ** degree for x, y in zip(u, v)) + mp.mpf(eps)) ** (1 / degree)

        def line(u, v, w):
            return max(dist(u, v) - dist(u, w) + mp.mpf(margin), mp.mpf(0))

        out = _per_line(a, axis % a.ndim, line, pos, neg)
        return _reduce(out, reduction)


def margin_ranking_loss(inputs1, inputs2, targets, margin=0.0, reduction="none"):
    m = mp.mpf(margin)
    return _elementwise(
        lambda x1, x2, y: max(m - y * (x1 - x2), mp.mpf(0)), reduction, inputs1, inputs2, targets
    )
