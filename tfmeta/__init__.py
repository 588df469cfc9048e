"""tfmeta: gradient-based meta-learning for TensorFlow/Keras.

Each meta-learner is a ``keras.Model`` wrapping an ordinary Keras task
learner; ``fit`` runs one meta-step per ``train_step``::

    meta = tfmeta.Leap(learner, inner_optimizer=keras.optimizers.SGD(0.1),
                       inner_steps=100)
    meta.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    meta.fit(tfmeta.tasks.sine.dataset(), epochs=10, steps_per_epoch=100)
    adapted = meta.adapt(support_x, support_y)   # a new Keras model
"""

__version__ = "0.1.0"

import os
import sys


def _command_line():
    """Whether this process is the ``tfmeta`` command (console script or
    ``python -m tfmeta``), which quiets TensorFlow's start-up lines."""
    argv = getattr(sys, "orig_argv", [])
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else None
    return (os.path.basename(sys.argv[0] if sys.argv else "") == "tfmeta"
            or module == "tfmeta")


# The command's stderr shows no native start-up lines of TensorFlow (oneDNN,
# CPU features: logged before TF_CPP_MIN_LOG_LEVEL applies), unless the user
# set TF_CPP_MIN_LOG_LEVEL.
_QUIET_IMPORT = (_command_line() and "TF_CPP_MIN_LOG_LEVEL" not in os.environ
                 and "tensorflow" not in sys.modules)

# TensorFlow's INFO banner (CPU features, oneDNN) is noise for users; warnings
# and errors still show. An explicit TF_CPP_MIN_LOG_LEVEL wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# oneDNN's CPU kernels (conv, pooling, matmul): tensorflow-cpu 2.21 turns
# them on by itself only on CPUs with AVX-512 VNNI/AMX; on the AVX2 machines
# we measured it left them off, and the Leap Omniglot net's compiled inner
# loop ran ~2x faster with them (docs/performance.md). Only takes effect
# when tfmeta is imported before TensorFlow; TF_ENABLE_ONEDNN_OPTS=0 wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

try:
    if _QUIET_IMPORT:
        _stderr, _devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
        os.dup2(_devnull, 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            os.dup2(_stderr, 2)
            os.close(_stderr)
            os.close(_devnull)
    else:
        import tensorflow  # noqa: F401
except ImportError as err:  # pragma: no cover - depends on the install
    raise ImportError(
        "tfmeta needs TensorFlow 2.21: pip install 'tfmeta[cpu]' on a machine "
        "without a GPU, or 'tfmeta[gpu]' for the CUDA build.") from err

from tfmeta import (  # noqa: F401
    checks, errors, export, inner_loop, inner_optimizers, layers, registry, tasks)
from tfmeta.errors import ExportError, NonFiniteLossError
from tfmeta.export import load
from tfmeta.inner_loop import Adaptation
from tfmeta.meta_learner import TASK_KEYS, MetaLearner, MetaModel, MetaStep
from tfmeta.registry import register
# Methods register themselves on import; this order is ``tfmeta list``'s.
from tfmeta.leap import Leap
from tfmeta.reptile import Reptile
from tfmeta.maml import FOMAML, MAML
from tfmeta.finetune import FineTune
from tfmeta.scratch import Scratch
from tfmeta.anil import ANIL
from tfmeta.meta_sgd import MetaSGD
from tfmeta import warpgrad  # noqa: E402
from tfmeta.warpgrad import WarpGrad
from tfmeta.schedules import linear_annealing
from tfmeta import transfer  # noqa: E402
from tfmeta.transfer import MetaTransfer

__all__ = [
    "ANIL", "Adaptation", "ExportError", "FOMAML", "FineTune", "Leap", "MAML",
    "MetaLearner", "MetaModel", "MetaSGD", "MetaStep", "MetaTransfer",
    "NonFiniteLossError",
    "Reptile", "Scratch", "TASK_KEYS", "WarpGrad", "checks", "errors",
    "export", "inner_loop", "inner_optimizers", "layers", "linear_annealing",
    "load", "register", "registry", "tasks", "transfer", "warpgrad",
]
