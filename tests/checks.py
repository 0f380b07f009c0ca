"""Assertions shared by the per-family test modules: the errors MLX raises are
raised by anyloss too, as ValueError with a message showing what was given."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn.losses as mlx_losses
import numpy as np
import pytest

import anyloss
from backends import to_lib


def _as(convert, kwargs):
    return {k: (convert(v) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}


def assert_shape_mismatch(lib: str, name: str, kwargs: dict, shapes: list, mlx_raises: bool) -> None:
    """``name(**kwargs)`` with arrays of mismatched shapes raises ValueError
    naming the loss and both shapes (and MLX raises too, where it does)."""
    if mlx_raises:
        with pytest.raises(ValueError):
            getattr(mlx_losses, name)(**_as(mx.array, kwargs))
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(**_as(lambda v: to_lib(lib, v), kwargs))
    message = str(info.value)
    assert name in message
    for shape in shapes:
        assert str(shape) in message, (shape, message)


def assert_invalid_reduction(lib: str, name: str, args: list, reduction) -> None:
    """``name(*args, reduction=reduction)`` raises ValueError in MLX and in
    anyloss; ours shows the value given and the three valid ones."""
    with pytest.raises(ValueError):
        getattr(mlx_losses, name)(*(mx.array(a) for a in args), reduction=reduction)
    with pytest.raises(ValueError) as info:
        getattr(anyloss, name)(*(to_lib(lib, a) for a in args), reduction=reduction)
    message = str(info.value)
    assert name in message and repr(reduction) in message
    assert all(f"'{r}'" in message for r in ("none", "mean", "sum")), message
