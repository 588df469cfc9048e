"""Meta-transfer (gradient-based transfer learning): support and query of a
task come from different function families; an encoder maps the support to
a code ``z``, a decoder maps ``z`` to the weights ``psi`` of a query learner
``g_psi`` (eqs. 4-8).

Encoders by name (``make_encoder`` / ``MetaTransfer(encoder=...)``):

==============  ==========================================================
``context``     eq. 4, CAVIA-style context gradient (``ContextEncoder``)
``nonlinear``   eq. 5, LEO-style hypernetwork gradient (``NonlinearEncoder``)
``linear``      eq. 6, k directional derivatives ``V grad L`` (``LinearEncoder``)
``mean``        DeepSets mean pooling (``PoolingEncoder``)
``max``         PointNet max pooling (``PoolingEncoder``)
``transformer`` softmax(QK^T)V, then mean (``TransformerEncoder``)
``deep_kernel`` MetaFun-style RBF kernel, predicts the query (``DeepKernel``)
==============  ==========================================================
"""

from tfmeta.checks import positive_int
from tfmeta.transfer.decoder import Decoder
from tfmeta.transfer.deep_kernel import DeepKernel
from tfmeta.transfer.gradient import (ContextEncoder, GradientEncoder,
                                      LinearEncoder, NonlinearEncoder)
from tfmeta.transfer.pooling import PoolingEncoder, TransformerEncoder

GRADIENT_ENCODERS = ("context", "nonlinear", "linear")
"""The gradient encoders (eqs. 4-6)."""
ENCODERS = GRADIENT_ENCODERS + ("mean", "max", "transformer", "deep_kernel")
"""Every encoder ``make_encoder`` and ``MetaTransfer`` take by name."""


def make_encoder(name, k=None, output_dim=None, **options):
    """The encoder called ``name`` (one of ``ENCODERS``).

    ``k`` (the code's size, >= 1) is required by all but ``deep_kernel``,
    which has no code and needs ``output_dim`` (the query targets' size)
    instead. ``options`` go to the encoder's class (e.g. ``steps``,
    ``first_order``, ``lr`` and ``support_loss`` of the gradient encoders,
    ``hidden``, ``seed``); an option a class does not take is refused.

    Args:
      name: one of ``ENCODERS``.
      k: the code's size (default ``None``; required but for
        ``deep_kernel``).
      output_dim: the query targets' size, ``deep_kernel`` only (default
        ``None``).
      **options: the encoder class's other arguments.
    """
    if not isinstance(name, str) or name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of "
                         f"{', '.join(ENCODERS)}.")
    if name == "deep_kernel":
        if k is not None:
            raise ValueError("the deep_kernel encoder has no latent code: "
                             f"k does not apply (got k={k!r}).")
        if output_dim is None:
            raise ValueError("the deep_kernel encoder predicts the query "
                             "directly: give output_dim (query targets' size).")
        return _construct(DeepKernel, name, dict(output_dim=output_dim,
                                                 **options))
    if k is None:
        raise ValueError(f"the {name} encoder needs k, the size of its code "
                         "(the task dimension where known, e.g. 2 for cos-sin).")
    k = positive_int("k", k)
    if name in ("mean", "max"):
        return _construct(PoolingEncoder, name, dict(k=k, pool=name, **options))
    classes = {"context": ContextEncoder, "nonlinear": NonlinearEncoder,
               "linear": LinearEncoder, "transformer": TransformerEncoder}
    return _construct(classes[name], name, dict(k=k, **options))


def _construct(cls, name, kwargs):
    try:
        return cls(name=f"{name}_encoder", **kwargs)
    except TypeError as err:
        raise ValueError(f"the {name} encoder does not take one of the options "
                         f"{sorted(kwargs)}: {err}") from err


from tfmeta.transfer.meta_transfer import MetaTransfer  # noqa: E402

__all__ = ["ContextEncoder", "Decoder", "DeepKernel", "ENCODERS",
           "GRADIENT_ENCODERS", "GradientEncoder", "LinearEncoder",
           "MetaTransfer", "NonlinearEncoder", "PoolingEncoder",
           "TransformerEncoder", "make_encoder"]
