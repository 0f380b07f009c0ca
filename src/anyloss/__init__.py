"""anyloss: the loss functions of ``mlx.nn.losses`` for every Array API library.

Arrays of NumPy, PyTorch, JAX, MLX, CuPy, Dask or array-api-strict go in;
arrays of the same library, on the same device, come out, differentiable by
that library's own autodiff.
"""

from .classification import (
    binary_cross_entropy,
    cross_entropy,
    hinge_loss,
    kl_div_loss,
    nll_loss,
)
from .contrastive import info_nce_loss, ntxent_loss
from .divergence import js_div_loss
from .embedding import cosine_similarity_loss, margin_ranking_loss, triplet_loss
from .focal import poly1_cross_entropy, sigmoid_focal_loss, softmax_focal_loss
from .forecasting import mape_loss, msle_loss, poisson_nll_loss
from .linear import linear_cross_entropy
from .margin import (
    multi_margin_loss,
    multilabel_soft_margin_loss,
    soft_margin_loss,
    squared_hinge_loss,
)
from .pairwise import cosine_embedding_loss, hinge_embedding_loss
from .regression import (
    gaussian_nll_loss,
    huber_loss,
    l1_loss,
    log_cosh_loss,
    mse_loss,
    smooth_l1_loss,
)
from .segmentation import dice_loss
from .sequence import ctc_loss

__version__ = "0.1.0"

__all__ = [
    "binary_cross_entropy",
    "cosine_embedding_loss",
    "cosine_similarity_loss",
    "cross_entropy",
    "ctc_loss",
    "dice_loss",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "hinge_loss",
    "huber_loss",
    "info_nce_loss",
    "js_div_loss",
    "kl_div_loss",
    "l1_loss",
    "linear_cross_entropy",
    "log_cosh_loss",
    "mape_loss",
    "margin_ranking_loss",
    "mse_loss",
    "msle_loss",
    "multi_margin_loss",
    "multilabel_soft_margin_loss",
    "nll_loss",
    "ntxent_loss",
    "poisson_nll_loss",
    "poly1_cross_entropy",
    "sigmoid_focal_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
    "softmax_focal_loss",
    "squared_hinge_loss",
    "triplet_loss",
]
