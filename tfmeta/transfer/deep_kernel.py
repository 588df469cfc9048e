"""Deep-kernel baseline (MetaFun-style; section 5.1, appendix A.1).

No latent code: the query is predicted directly,
``y^Q = w(sum_i k(x^Q, x_i^S) r(x_i^S, y_i^S))``, with an RBF kernel
``k(a, b) = exp(-||e_Q(a) - e_S(b)||^2 / tau)`` (tau = 1) on 128-dim
encodings from 2-layer MLPs, ``r`` and ``w`` 2-layer MLPs. Support and
query points get an MLP each by default (their inputs may differ in size,
as for the pendulums); ``shared_embedding=True`` uses one for both, as
MetaFun does (the appendix's wording allows either). On cos -> sin, 1500
meta-steps at sigma 0, one seed: query MSE 1.65 with two MLPs, 2.31 with
one (docs/transfer.md).
The sum over the support makes it invariant to the order of its points.
"""

import keras
import tensorflow as tf

from tfmeta.checks import positive_int, positive_number
from tfmeta.transfer.pooling import point_mlp


class DeepKernel(keras.layers.Layer):
    """``call(support_x, support_y, query_x) -> query predictions [B, M, eq]``.

    Args:
      output_dim: per-point size of the query targets (``eq``).
      hidden: width of every MLP (default 128).
      tau: RBF temperature (default 1.0).
      shared_embedding: one embedding MLP for support and query inputs
        (needs inputs of the same size; default ``False``).
      seed: seed of the weight initializers (default ``None``).
      **kwargs: passed on to ``keras.layers.Layer`` (e.g. ``name``).
    """

    predicts_query = True
    first_order = False
    steps = 1

    def __init__(self, output_dim, hidden=128, tau=1.0, shared_embedding=False,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.shared_embedding = bool(shared_embedding)
        self.output_dim = positive_int("output_dim", output_dim)
        self.hidden = positive_int("hidden", hidden)
        self.tau = positive_number("tau", tau)
        self.seed = seed
        s = lambda i: None if seed is None else seed + 20 * i  # noqa: E731
        self.embed_support = point_mlp(self.hidden, self.hidden, 1, s(1),
                                       "embed_support")
        self.r = point_mlp(self.hidden, self.hidden, 1, s(3), "r")
        self.w = point_mlp(self.hidden, self.output_dim, 1, s(4), "w")
        self.embed_query = None
        self.support_dims = self.query_dims = None

    def build(self, support_dims, query_dims):
        """``support_dims = (ds, es)``, ``query_dims = (dq, eq)``."""
        ds, es = (positive_int("support dimension", d) for d in support_dims)
        dq, eq = (positive_int("query dimension", d) for d in query_dims)
        if eq != self.output_dim:
            raise ValueError(f"query targets have {eq} values per point but "
                             f"the deep kernel's output_dim is {self.output_dim}.")
        self.support_dims, self.query_dims = (ds, es), (dq, eq)
        self.embed_support.build((None, None, ds))
        if self.shared_embedding:
            if dq != ds:
                raise ValueError(
                    f"shared_embedding needs support and query inputs of one "
                    f"size; got {ds} and {dq}.")
            self.embed_query = self.embed_support
        else:
            self.embed_query = point_mlp(
                self.hidden, self.hidden, 1,
                None if self.seed is None else self.seed + 40, "embed_query")
            self.embed_query.build((None, None, dq))
        self.r.build((None, None, ds + es))
        self.w.build((None, None, self.hidden))
        self.built = True

    def call(self, support_x, support_y, query_x):
        cast = lambda t: tf.cast(t, self.compute_dtype)  # noqa: E731
        support_x, support_y, query_x = map(cast, (support_x, support_y, query_x))
        es = self.embed_support(support_x)                    # [B, N, H]
        eq = self.embed_query(query_x)                        # [B, M, H]
        dist = (tf.reduce_sum(eq ** 2, -1)[:, :, None]
                + tf.reduce_sum(es ** 2, -1)[:, None, :]
                - 2.0 * tf.matmul(eq, es, transpose_b=True))  # [B, M, N]
        kernel = tf.exp(-tf.maximum(dist, 0.0) / self.tau)
        r = self.r(tf.concat([support_x, support_y], -1))     # [B, N, H]
        return self.w(tf.matmul(kernel, r))

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim,
                "hidden": self.hidden, "tau": self.tau,
                "shared_embedding": self.shared_embedding, "seed": self.seed}
