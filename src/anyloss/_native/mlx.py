"""Fast paths for MLX arrays: none at present; the portable code runs.

``mx.logsumexp`` is MLX's fused kernel, but it computes ``log(sum(exp(z)))``
and rounds a confident prediction's loss (below about 6e-8 in float32) to
zero, which the portable code keeps; it is therefore not equal to the
portable value and is not used.
"""
