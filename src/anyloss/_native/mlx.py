"""Fast paths for MLX arrays: none at present; the portable code runs.

``mx.logsumexp`` is MLX's fused kernel, but it computes ``log(sum(exp(z)))``
and rounds a confident prediction's loss (below about 6e-8 in float32) to
zero, which the portable code keeps; it is therefore not equal to the
portable value and is not used.

Measured (2-core machine, other work running, 16M float32 elements, eager
MLX on CPU): ``mx.compile(..., shapeless=True)`` of the portable BCE-with-
logits chain takes 0.77 s against 0.57 s for ``mlx.nn.losses`` and 1.06 s
uncompiled; MLX's CPU compiler fuses the chain but the transcendental part
(``log1p(exp(-|x|))``: 0.46-0.49 s eager or compiled, as ``mx.logaddexp``)
dominates, and the guarded linear term ``(x >= 0) - t`` times ``x`` with
``0 * inf = 0`` costs 0.23 s compiled against 0.25 s eager.  Compiling gains
too little to be worth a second code path; mse, l1 and huber already run
at 0.75-1.05x the peer.
"""
