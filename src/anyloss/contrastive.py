"""Contrastive losses over a batch of embeddings: info_nce_loss (CLIP,
sentence-transformers' MultipleNegativesRankingLoss) and ntxent_loss
(SimCLR, optax's ntxent)."""

from __future__ import annotations

from typing import Any

from . import _native
from ._common import (
    Reduction,
    check_integer,
    check_real,
    check_reduction,
    float_dtypes,
    namespace,
    shape_of,
)

Array = Any


def _check_matrix(func: str, name: str, x: Array) -> None:
    if x.ndim != 2:
        raise ValueError(
            f"{func}: {name} must be a matrix of embeddings, shape (batch, features), got shape "
            f"{shape_of(x)}"
        )


def info_nce_loss(
    queries: Array,
    keys: Array,
    temperature: float = 0.07,
    symmetric: bool = False,
    reduction: Reduction = "none",
) -> Array:
    r"""InfoNCE with in-batch negatives: each query should be nearest its own key.

    With :math:`s_{ij} = \cos(q_i, k_j) / \tau`, the loss of query :math:`i` is
    the cross entropy of its similarities to every key, its own key (row
    :math:`i`) the target:

    .. math::

        \ell_i = -\log \frac{e^{s_{ii}}}{\sum_j e^{s_{ij}}}

    This is sentence-transformers' ``MultipleNegativesRankingLoss`` with
    ``scale = 1 / temperature`` (``reduction='mean'``); extra rows of ``keys``
    beyond the queries are hard negatives.  With ``symmetric`` each query's
    loss is averaged with its key's loss against all queries,
    :math:`\tfrac12\big(\ell_i + (-\log e^{s_{ii}} / \sum_j e^{s_{ji}})\big)`:
    CLIP's loss.  The vectors are scaled by their largest entry before the
    norms, so huge or tiny embeddings give ordinary cosines; a zero vector has
    cosine 0 with every key (a finite loss and gradient).

    Args:
        queries (array): The query embeddings, shape ``(N, D)``.
        keys (array): The key embeddings, shape ``(M, D)`` with ``M >= N``;
            ``keys[i]`` is the positive of ``queries[i]``, every other row a negative.
        temperature (float, optional): :math:`\tau`, ``> 0``. Default: ``0.07``.
        symmetric (bool, optional): Average with the keys-to-queries direction
            (needs ``M == N``). Default: ``False``.
        reduction (str, optional): ``'none'`` | ``'mean'`` | ``'sum'``. Default: ``'none'``.

    Returns:
        array: The loss, shape ``(N,)`` for ``'none'``, a 0-d array otherwise.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> q = np.array([[1.0, 0.0], [0.0, 1.0]])
        >>> k = np.array([[2.0, 0.1], [0.5, 1.0]])
        >>> anyloss.info_nce_loss(q, k, temperature=0.5)
        array([0.28656764, 0.16949632])
        >>> anyloss.info_nce_loss(q, k, temperature=0.5, symmetric=True, reduction="mean")
        array(0.23463184)
    """
    func = "info_nce_loss"
    xp = namespace(func, queries=queries, keys=keys)
    check_reduction(func, reduction)
    tau = check_real(func, "temperature", temperature, low=0.0, low_inclusive=False)
    _check_matrix(func, "queries", queries)
    _check_matrix(func, "keys", keys)
    (n, d), (m, e) = shape_of(queries), shape_of(keys)
    if d != e:
        raise ValueError(
            f"{func}: queries has shape {(n, d)} and keys has shape {(m, e)}; both need the "
            f"same number of features"
        )
    if m < n or m == 0:
        raise ValueError(
            f"{func}: keys has shape {(m, e)} but queries has shape {(n, d)}; every query needs "
            f"its key (keys[i] for queries[i]), so keys needs at least {max(n, 1)} row"
            f"{'s' if max(n, 1) != 1 else ''}"
        )
    if symmetric and m != n:
        raise ValueError(
            f"{func}: symmetric=True needs one key per query, but queries has shape {(n, d)} "
            f"and keys has shape {(m, e)}"
        )
    out_dtype, dtype = float_dtypes(xp, func, queries=queries, keys=keys)
    return _native.call(
        xp, func, (tau, bool(symmetric)), reduction, out_dtype, dtype, False, queries, keys
    )


def ntxent_loss(embeddings: Array, labels: Array, temperature: float = 0.07) -> Array:
    r"""NT-Xent (SimCLR): embeddings with equal labels should be nearer each
    other than any embedding of another label.

    With :math:`s_{ij} = \cos(e_i, e_j) / \tau`, positives :math:`P` the
    ordered pairs :math:`i \ne j` of equal labels and :math:`N(i)` the rows
    whose label differs from :math:`i`'s:

    .. math::

        \ell = \frac{1}{|P|} \sum_{(i, j) \in P}
            -\log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k \in N(i)} e^{s_{ik}}}

    These are optax's ``ntxent`` numbers (a scalar, the mean over the
    positive pairs).  A row without negatives contributes 0 per pair; a batch
    without any positive pair has loss 0 (optax gives ``nan``).  Cosines are
    taken as in :func:`info_nce_loss` (optax floors each squared norm at the
    dtype's eps instead: the two differ only for norms below about ``3e-4``
    in float32).

    Args:
        embeddings (array): The embeddings, shape ``(N, D)``.
        labels (array): Integer labels, shape ``(N,)``: rows with equal labels
            are positive pairs (for SimCLR, the two views of one image).
        temperature (float, optional): :math:`\tau`, ``> 0``. Default: ``0.07``.

    Returns:
        array: The loss, a 0-d array.

    Example:
        >>> import numpy as np
        >>> import anyloss
        >>> e = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.8]])
        >>> anyloss.ntxent_loss(e, np.array([0, 0, 1, 1]), temperature=0.5)
        array(0.30069549)
    """
    func = "ntxent_loss"
    xp = namespace(func, embeddings=embeddings, labels=labels)
    tau = check_real(func, "temperature", temperature, low=0.0, low_inclusive=False)
    _check_matrix(func, "embeddings", embeddings)
    check_integer(xp, func, "labels", labels)
    n = shape_of(embeddings)[0]
    if shape_of(labels) != (n,):
        raise ValueError(
            f"{func}: labels has shape {shape_of(labels)} but embeddings has shape "
            f"{shape_of(embeddings)}; expected one label per row, shape {(n,)}"
        )
    if n == 0:
        raise ValueError(f"{func}: embeddings has shape {shape_of(embeddings)}; expected at least one row")
    out_dtype, dtype = float_dtypes(xp, func, embeddings=embeddings)
    return _native.call(xp, func, (tau,), "none", out_dtype, dtype, False, embeddings, labels)
