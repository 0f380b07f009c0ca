"""The plot on each loss's page: the loss and its derivative, drawn at build time.

Every curve is computed by anyloss on JAX arrays, and every derivative by
``jax.grad`` through anyloss: the same code a user would write.  A page draws
its figure with a ``plot`` directive::

    ```{plot}
    import lossplots
    lossplots.draw("huber_loss")
    ```
"""

from __future__ import annotations

import math
from typing import Callable

import jax

jax.config.update("jax_enable_x64", True)  # smooth curves; anyloss follows the input dtype

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import anyloss  # noqa: E402

COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#8250df")


def _curve(loss_of: Callable, x: jnp.ndarray) -> tuple:
    """The loss at every point of ``x`` and its derivative there.

    ``loss_of`` maps the 1-d grid to one loss per point, each depending on its
    own point only, so the gradient of the sum is the pointwise derivative.
    """
    both = jax.jit(lambda t: (loss_of(t), jax.grad(lambda u: jnp.sum(loss_of(u)))(t)))
    return both(x)


def _zeros(x):
    return jnp.zeros_like(x)


def _error_losses(name: str) -> tuple:
    """Losses of a prediction against a target: plotted against the error."""
    x = jnp.linspace(-3.0, 3.0, 601)
    if name == "l1_loss":
        variants = [("", lambda e: anyloss.l1_loss(e, _zeros(e), reduction="none"))]
    elif name == "mse_loss":
        variants = [("", lambda e: anyloss.mse_loss(e, _zeros(e), reduction="none"))]
    elif name == "smooth_l1_loss":
        variants = [
            (f"beta = {b:g}", lambda e, b=b: anyloss.smooth_l1_loss(e, _zeros(e), beta=b, reduction="none"))
            for b in (0.5, 1.0, 2.0)
        ]
    elif name == "huber_loss":
        variants = [
            (f"delta = {d:g}", lambda e, d=d: anyloss.huber_loss(e, _zeros(e), delta=d))
            for d in (0.5, 1.0, 2.0)
        ]
    elif name == "log_cosh_loss":
        variants = [("", lambda e: anyloss.log_cosh_loss(e, _zeros(e)))]
    elif name == "gaussian_nll_loss":
        variants = [
            (
                f"vars = {v:g}",
                lambda e, v=v: anyloss.gaussian_nll_loss(
                    e, _zeros(e), jnp.full_like(e, v), reduction="none"
                ),
            )
            for v in (0.25, 1.0, 4.0)
        ]
    else:
        raise KeyError(name)
    xlabel = "error  x − y"
    glabel = "∂ loss / ∂ x"
    return x, variants, xlabel, glabel


def _binary_cross_entropy() -> tuple:
    x = jnp.linspace(-6.0, 6.0, 601)
    variants = [
        (f"target {t}", lambda z, t=t: anyloss.binary_cross_entropy(z, jnp.full_like(z, t), reduction="none"))
        for t in (1, 0)
    ]
    return x, variants, "logit  x", "∂ loss / ∂ x"


def _cross_entropy() -> tuple:
    x = jnp.linspace(-6.0, 6.0, 601)

    def with_smoothing(s: float) -> Callable:
        def loss(z):
            logits = jnp.stack([z, _zeros(z), _zeros(z)], axis=1)  # three classes
            labels = jnp.zeros(z.shape[0], dtype=jnp.int32)
            return anyloss.cross_entropy(logits, labels, label_smoothing=s)

        return loss

    variants = [(f"label_smoothing = {s:g}", with_smoothing(s)) for s in (0.0, 0.1, 0.3)]
    return x, variants, "logit of the target class (3 classes, the others 0)", "∂ loss / ∂ logit"


def _nll_loss() -> tuple:
    x = jnp.linspace(0.02, 0.98, 481)

    def loss(p):
        log_probs = jnp.log(jnp.stack([p, 1.0 - p], axis=1))
        return anyloss.nll_loss(log_probs, jnp.zeros(p.shape[0], dtype=jnp.int32))

    return x, [("", loss)], "probability of the target class  p  (inputs = log p)", "∂ loss / ∂ p"


def _kl_div_loss() -> tuple:
    x = jnp.linspace(0.02, 0.98, 481)
    target = jnp.log(jnp.array([0.3, 0.7]))

    def loss(s):
        inputs = jnp.log(jnp.stack([s, 1.0 - s], axis=1))
        return anyloss.kl_div_loss(inputs, jnp.broadcast_to(target, inputs.shape))

    return (
        x,
        [("target (0.3, 0.7)", loss)],
        "predicted distribution (s, 1 − s): s  (inputs = log)",
        "∂ loss / ∂ s",
    )


def _hinge_loss() -> tuple:
    x = jnp.linspace(-3.0, 3.0, 601)
    variants = [
        (f"target {t:+d}", lambda z, t=t: anyloss.hinge_loss(z, jnp.full(z.shape, t)))
        for t in (1, -1)
    ]
    return x, variants, "score  x", "∂ loss / ∂ x"


def _cosine_similarity_loss() -> tuple:
    x = jnp.linspace(-math.pi, math.pi, 601)

    def loss(theta):
        x1 = jnp.stack([jnp.ones_like(theta), _zeros(theta)], axis=1)
        x2 = 2.0 * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)
        return anyloss.cosine_similarity_loss(x1, x2)

    return x, [("", loss)], "angle between x1 and x2 (radians)", "∂ similarity / ∂ angle"


def _triplet_loss() -> tuple:
    x = jnp.linspace(0.02, 4.0, 600)

    def with_margin(m: float) -> Callable:
        def loss(r):
            anchors = jnp.zeros((r.shape[0], 2))
            positives = jnp.stack([jnp.ones_like(r), _zeros(r)], axis=1)  # at distance 1
            negatives = jnp.stack([r, _zeros(r)], axis=1)  # at distance r
            return anyloss.triplet_loss(anchors, positives, negatives, margin=m)

        return loss

    variants = [(f"margin = {m:g}", with_margin(m)) for m in (0.5, 1.0, 2.0)]
    return x, variants, "distance to the negative (the positive at distance 1)", "∂ loss / ∂ distance"


def _margin_ranking_loss() -> tuple:
    x = jnp.linspace(-3.0, 3.0, 601)
    variants = [
        (
            f"margin = {m:g}",
            lambda d, m=m: anyloss.margin_ranking_loss(d, _zeros(d), jnp.ones(d.shape), margin=m),
        )
        for m in (0.0, 0.5, 1.0)
    ]
    return x, variants, "x1 − x2  (targets = 1: x1 should rank higher)", "∂ loss / ∂ x1"


def _focal_axis() -> tuple:
    return jnp.linspace(-6.0, 6.0, 601)


def _sigmoid_focal_loss() -> tuple:
    variants = [
        (
            f"gamma = {g:g}",
            lambda z, g=g: anyloss.sigmoid_focal_loss(z, jnp.ones_like(z), alpha=None, gamma=g),
        )
        for g in (0.0, 0.5, 2.0)
    ]
    return _focal_axis(), variants, "logit  x  (target 1, alpha = None)", "∂ loss / ∂ x"


def _three_classes(z):
    """Logits of three classes: ``z`` for the target class 0, 0 for the others."""
    return jnp.stack([z, _zeros(z), _zeros(z)], axis=1), jnp.zeros(z.shape[0], dtype=jnp.int32)


def _softmax_focal_loss() -> tuple:
    variants = [
        (f"gamma = {g:g}", lambda z, g=g: anyloss.softmax_focal_loss(*_three_classes(z), gamma=g))
        for g in (0.0, 1.0, 2.0)
    ]
    return _focal_axis(), variants, "logit of the target class (3 classes, the others 0)", "∂ loss / ∂ logit"


def _poly1_cross_entropy() -> tuple:
    variants = [
        (f"epsilon = {e:g}", lambda z, e=e: anyloss.poly1_cross_entropy(*_three_classes(z), epsilon=e))
        for e in (-1.0, 0.0, 2.0)
    ]
    return _focal_axis(), variants, "logit of the target class (3 classes, the others 0)", "∂ loss / ∂ logit"


def _dice_loss() -> tuple:
    def tversky(a: float, b: float) -> Callable:
        def loss(z):  # one sample per point: one pixel, one class (sigmoid), target 1
            return anyloss.dice_loss(z[:, None], jnp.ones(z.shape[0], dtype=jnp.int32), alpha=a, beta=b, smooth=0.0)

        return loss

    variants = [
        ("Dice (alpha = beta = 0.5)", tversky(0.5, 0.5)),
        ("Jaccard (alpha = beta = 1)", tversky(1.0, 1.0)),
        ("Tversky (alpha = 0.3, beta = 0.7)", tversky(0.3, 0.7)),
    ]
    return _focal_axis(), variants, "logit of a foreground pixel (one class, smooth = 0)", "∂ loss / ∂ logit"


def _multi_margin_loss() -> tuple:
    x = jnp.linspace(-3.0, 3.0, 601)
    variants = [
        (
            f"p = {p}, margin = {m:g}",
            lambda z, p=p, m=m: anyloss.multi_margin_loss(*_three_classes(z), p=p, margin=m),
        )
        for p, m in ((1, 1.0), (2, 1.0), (1, 0.5))
    ]
    return x, variants, "score of the target class (3 classes, the others 0)", "∂ loss / ∂ score"


def _signed_losses(name: str) -> tuple:
    x = jnp.linspace(-3.0, 3.0, 601)
    fn = getattr(anyloss, name)
    variants = [(f"target {t:+d}", lambda z, t=t: fn(z, jnp.full(z.shape, float(t)))) for t in (1, -1)]
    return x, variants, "score  x", "∂ loss / ∂ x"


def _multilabel_soft_margin_loss() -> tuple:
    def loss(z):  # two labels: the varied one (target 1) and one with logit 0 and target 0
        logits = jnp.stack([z, _zeros(z)], axis=1)
        targets = jnp.stack([jnp.ones_like(z), _zeros(z)], axis=1)
        return anyloss.multilabel_soft_margin_loss(logits, targets)

    return _focal_axis(), [("", loss)], "logit of a label with target 1 (the other: logit 0, target 0)", "∂ loss / ∂ logit"


def _unit_circle(theta):
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)


def _info_nce_loss() -> tuple:
    x = jnp.linspace(-math.pi, math.pi, 601)
    keys = jnp.array([[1.0, 0.0], [0.0, 1.0]])  # its own key, and a negative at 90 degrees

    def at(temperature: float) -> Callable:
        return jax.vmap(lambda th: anyloss.info_nce_loss(_unit_circle(th)[None], keys, temperature)[0])

    variants = [(f"temperature = {t:g}", at(t)) for t in (0.1, 0.3, 1.0)]
    return x, variants, "angle between the query and its key (a negative at 90°)", "∂ loss / ∂ angle"


def _ntxent_loss() -> tuple:
    x = jnp.linspace(-math.pi, math.pi, 601)
    others = jnp.array([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])  # its positive, then another pair
    labels = jnp.array([0, 0, 1, 1])

    def at(temperature: float) -> Callable:
        def one(th):
            return anyloss.ntxent_loss(jnp.concatenate([_unit_circle(th)[None], others]), labels, temperature)

        return jax.vmap(one)

    variants = [(f"temperature = {t:g}", at(t)) for t in (0.1, 0.3, 1.0)]
    return x, variants, "angle between an embedding and its positive (labels 0, 0, 1, 1)", "∂ loss / ∂ angle"


def _cosine_embedding_loss() -> tuple:
    x = jnp.linspace(-math.pi, math.pi, 601)

    def with_target(t: int, m: float) -> Callable:
        def loss(theta):
            x1 = jnp.stack([jnp.ones_like(theta), _zeros(theta)], axis=1)
            return anyloss.cosine_embedding_loss(x1, 2.0 * _unit_circle(theta), jnp.full(theta.shape, t), margin=m)

        return loss

    variants = [("target +1", with_target(1, 0.0)), ("target −1, margin = 0", with_target(-1, 0.0)),
                ("target −1, margin = 0.5", with_target(-1, 0.5))]
    return x, variants, "angle between x1 and x2 (radians)", "∂ loss / ∂ angle"


def _hinge_embedding_loss() -> tuple:
    x = jnp.linspace(0.0, 3.0, 601)
    variants = [("target +1", lambda d: anyloss.hinge_embedding_loss(d, jnp.ones(d.shape)))] + [
        (f"target −1, margin = {m:g}", lambda d, m=m: anyloss.hinge_embedding_loss(d, -jnp.ones(d.shape), margin=m))
        for m in (1.0, 2.0)
    ]
    return x, variants, "distance  x", "∂ loss / ∂ x"


def _poisson_nll_loss() -> tuple:
    x = jnp.linspace(-3.0, 2.5, 551)
    variants = [
        (f"count {c:g}", lambda z, c=c: anyloss.poisson_nll_loss(z, jnp.full_like(z, c)))
        for c in (0.0, 1.0, 4.0)
    ]
    return x, variants, "log-rate  x  (log_input=True)", "∂ loss / ∂ x"


def _ctc_loss() -> tuple:
    x = jnp.linspace(-4.0, 6.0, 501)

    def of(steps: int) -> Callable:
        def loss(z):
            n = z.shape[0]
            logits = jnp.zeros((n, steps, 3)).at[:, :, 1].set(z[:, None])
            targets = jnp.ones((n, 1), dtype=jnp.int32)
            lengths = jnp.full((n,), steps, dtype=jnp.int32)
            return anyloss.ctc_loss(logits, targets, lengths, jnp.ones((n,), jnp.int32), reduction="none")

        return loss

    variants = [(f"{t} time steps", of(t)) for t in (1, 3, 8)]
    return x, variants, "logit of the label at every step", "∂ loss / ∂ logit"


def _js_div_loss() -> tuple:
    x = jnp.linspace(0.002, 0.998, 499)

    def against(target: tuple) -> Callable:
        t = jnp.log(jnp.array(target))

        def loss(s):
            inputs = jnp.log(jnp.stack([s, 1.0 - s], axis=1))
            return anyloss.js_div_loss(inputs, jnp.broadcast_to(t, inputs.shape))

        return loss

    variants = [(f"target ({a:g}, {b:g})", against((a, b))) for a, b in ((0.3, 0.7), (0.0, 1.0))]
    return x, variants, "predicted distribution (s, 1 − s): s  (inputs = log)", "∂ loss / ∂ s"


def _linear_cross_entropy() -> tuple:
    """One feature per token, a weight of 1 for the target class and 0 for
    two others: the logits of :func:`_three_classes`, made by the layer."""
    w = jnp.array([[1.0], [0.0], [0.0]])

    def loss(z, **options):
        return anyloss.linear_cross_entropy(z[:, None], w, jnp.zeros(z.shape[0], dtype=jnp.int32),
                                            reduction="none", **options)

    variants = [
        ("plain", lambda z: loss(z)),
        ("logit_softcap = 2", lambda z: loss(z, logit_softcap=2.0)),
        ("z_loss = 0.1", lambda z: loss(z, z_loss=0.1)),
    ]
    return _focal_axis(), variants, "feature x (logit of the target class; 3 classes, the others 0)", "∂ loss / ∂ x"


def _relative_losses(name: str) -> tuple:
    fn = getattr(anyloss, name)
    x = jnp.linspace(0.0, 4.0, 601) if name == "mape_loss" else jnp.linspace(-1.0, 10.0, 661)
    targets = (0.5, 1.0, 2.0) if name == "mape_loss" else (0.0, 1.0, 5.0)
    variants = [(f"target {t:g}", lambda p, t=t: fn(p, jnp.full_like(p, t), reduction="none")) for t in targets]
    return x, variants, "prediction  p", "∂ loss / ∂ p"


_SPECIAL = {
    "binary_cross_entropy": _binary_cross_entropy,
    "cross_entropy": _cross_entropy,
    "nll_loss": _nll_loss,
    "kl_div_loss": _kl_div_loss,
    "hinge_loss": _hinge_loss,
    "cosine_similarity_loss": _cosine_similarity_loss,
    "triplet_loss": _triplet_loss,
    "margin_ranking_loss": _margin_ranking_loss,
    "sigmoid_focal_loss": _sigmoid_focal_loss,
    "softmax_focal_loss": _softmax_focal_loss,
    "poly1_cross_entropy": _poly1_cross_entropy,
    "linear_cross_entropy": _linear_cross_entropy,
    "dice_loss": _dice_loss,
    "multi_margin_loss": _multi_margin_loss,
    "soft_margin_loss": lambda: _signed_losses("soft_margin_loss"),
    "multilabel_soft_margin_loss": _multilabel_soft_margin_loss,
    "squared_hinge_loss": lambda: _signed_losses("squared_hinge_loss"),
    "info_nce_loss": _info_nce_loss,
    "ntxent_loss": _ntxent_loss,
    "cosine_embedding_loss": _cosine_embedding_loss,
    "hinge_embedding_loss": _hinge_embedding_loss,
    "poisson_nll_loss": _poisson_nll_loss,
    "ctc_loss": _ctc_loss,
    "js_div_loss": _js_div_loss,
    "mape_loss": lambda: _relative_losses("mape_loss"),
    "msle_loss": lambda: _relative_losses("msle_loss"),
}

NAMES = tuple(sorted(anyloss.__all__))


def draw(name: str) -> plt.Figure:
    """Draw the loss ``name`` (left) and its derivative (right) on a new figure."""
    if name not in NAMES:
        raise KeyError(f"{name!r} is not an anyloss loss")
    x, variants, xlabel, glabel = _SPECIAL[name]() if name in _SPECIAL else _error_losses(name)

    fig, (left, right) = plt.subplots(1, 2, figsize=(8.0, 3.0))
    for color, (label, loss_of) in zip(COLORS, variants):
        values, grads = _curve(loss_of, x)
        left.plot(x, values, color=color, linewidth=2, label=label or None)
        right.plot(x, grads, color=color, linewidth=2, label=label or None)
    ylabel = "similarity" if name == "cosine_similarity_loss" else "loss"
    left.set_ylabel(ylabel)
    right.set_ylabel(glabel)
    left.set_title(f"anyloss.{name}", fontsize=10, family="monospace")
    right.set_title("its derivative, by jax.grad", fontsize=10)
    for ax in (left, right):
        ax.set_xlabel(xlabel, fontsize=8.5)
        ax.axhline(0.0, color="#888888", linewidth=0.6)
        ax.axvline(0.0, color="#888888", linewidth=0.6)
        ax.grid(alpha=0.25)
        ax.tick_params(labelsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    if any(label for label, _ in variants):
        left.legend(fontsize=8, frameon=False)
    fig.tight_layout()
    return fig
