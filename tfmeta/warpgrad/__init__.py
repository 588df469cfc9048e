"""WarpGrad (Flennerhag et al., ICLR 2020): meta-learned warp layers.

A warped task learner interleaves task layers (adapted per task) with warp
layers (``tfmeta.layers.WarpLayer``, meta-parameters phi, held fixed during
adaptation). Backpropagation through the warp layers preconditions the task
gradient (eq. 6); WarpGrad meta-learns phi so that one warped step from any
point theta_k of a task's trajectory lowers the task's meta-loss:

    L(phi) = E_tau E_{theta ~ p(theta|tau)} L_meta(theta - alpha grad L_task(theta; phi); phi)

(eq. 11, ``objective="full"``), or with the task update detached (eq. 12,
``objective="approximate"``). The samples theta_k are the iterates of the
task's own training (section 2.4), collected online (Algorithm 1) or into a
replay buffer (Algorithm 2). Task parameters start from the learner's
initialization, which is fixed (appendix G, J) or meta-learned jointly,
``J = L(phi) + lambda C(theta_0)`` (eq. 13-17): Warp-Leap or Warp-MAML.

The package: ``partition`` (warp layers and the task/warp split),
``objective`` (the pure warp gradient of eq. 11/12, ``warp_gradient``),
``buffer`` (Algorithm 2's replay buffer), ``init_terms`` (the
initialization term: none, Leap, MAML), ``strategies`` (Algorithms 1-3,
one class each) and ``method`` (``WarpGrad``, the meta-learner).
"""

from tfmeta.warpgrad import buffer, init_terms, objective, strategies  # noqa: F401
from tfmeta.warpgrad.method import (  # noqa: F401
    INITIALIZATIONS, META_TRAINING, OBJECTIVES, WarpGrad)
from tfmeta.warpgrad.objective import warp_gradient  # noqa: F401
from tfmeta.warpgrad.partition import partition, warp_layers  # noqa: F401

__all__ = ["INITIALIZATIONS", "META_TRAINING", "OBJECTIVES", "WarpGrad",
           "buffer", "init_terms", "objective", "partition", "strategies",
           "warp_gradient", "warp_layers"]
