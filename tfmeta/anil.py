"""ANIL (Raghu et al., 2020, "Rapid Learning or Feature Reuse?"): MAML with
an inner loop that adapts only the head; the body is meta-learned by MAML's
gradient through that inner loop (second order) or its first-order variant.
"""

import keras

from tfmeta import registry
from tfmeta.maml import FOMAML, MAML


def head_layers(learner, head=None):
    """The learner's head layers: ``head=None`` the last ``Dense`` layer
    with weights, an int the last ``head`` layers with trainable weights, a
    name or list of names those layers. Errors name what is missing."""
    layers = [l for l in learner.layers if l.trainable_weights]
    if head is None:
        dense = [l for l in layers if isinstance(l, keras.layers.Dense)]
        if not dense:
            raise ValueError(
                "ANIL's default head is the learner's last Dense layer, and "
                f"{learner.name!r} has none; pass head=<count or layer names>.")
        return [dense[-1]]
    if isinstance(head, bool) or not isinstance(head, (int, str, list, tuple)):
        raise TypeError("head must be None, a number of last layers or layer "
                        f"names, got {head!r}.")
    if isinstance(head, int):
        if not 1 <= head < len(layers):
            raise ValueError(
                f"head={head}: the learner has {len(layers)} layers with "
                "weights, and ANIL needs at least one in the head and one in "
                "the body.")
        return layers[-head:]
    names = [head] if isinstance(head, str) else list(head)
    by_name = {l.name: l for l in layers}
    missing = [n for n in names if n not in by_name]
    if missing or not names:
        raise ValueError(f"head names {missing or names} are not layers with "
                         f"weights of {learner.name!r}: {sorted(by_name)}.")
    return [by_name[n] for n in names]


@registry.register("anil", "ANIL: adapt only the head, the body by MAML's "
                           "gradient")
class ANIL(MAML):
    """ANIL: the inner loop adapts only the head (the adaptation spec's
    ``mask``: every path holds the body fixed, ``fit``, ``adapt``,
    ``evaluate``, export); the meta-gradient of every parameter is MAML's,
    differentiated through the head's inner updates (the body's features
    enter them), or with ``first_order=True`` the query-loss gradient at the
    adapted weights (FOMAML's).

    Args:
      learner: a built Keras model, the task learner.
      head: which layers adapt: ``None`` (default) the last ``Dense`` layer;
        an int, that many last layers with weights; a layer name or a list
        of names.
      first_order: drop the second-order terms (cheaper; the body still
        learns from the query loss at the adapted head). Default ``False``.
      checkpoint_every: second order only, as ``MAML``'s (the checkpointed
        gradient through the inner loop). Default ``None``.
      **kwargs: the ``tfmeta.MetaLearner`` arguments (``inner_optimizer``,
        ``inner_steps``, ``eval_steps``, ``inner_batch_size``,
        ``parallel_tasks``, ``vectorize_tasks``, ``seed``, ``name``).
    """

    def __init__(self, learner, head=None, first_order=False,
                 checkpoint_every=None, **kwargs):
        super().__init__(learner, checkpoint_every=checkpoint_every, **kwargs)
        self.head = list(head) if isinstance(head, tuple) else head
        self.first_order = bool(first_order)
        if self.first_order and self.checkpoint_every is not None:
            raise ValueError(
                "ANIL(first_order=True) does not differentiate through the "
                "inner loop, so checkpoint_every does not apply; got "
                f"checkpoint_every={self.checkpoint_every!r}.")
        layers = head_layers(learner, self.head)
        ids = {id(v) for l in layers for v in l.trainable_weights}
        self.task_mask = [id(v) in ids for v in learner.trainable_variables]
        if all(self.task_mask):
            raise ValueError("ANIL's head holds every trainable variable of "
                             "the learner: nothing would be left to the body.")

    def get_config(self):
        return dict(super().get_config(), head=self.head,
                    first_order=self.first_order)

    def graph_options(self):
        return {} if self.first_order else super().graph_options()

    def xla_unsupported(self):
        return None if self.first_order else super().xla_unsupported()

    def task_meta_gradient(self, params, nontrainable, task, seed):
        if self.first_order:
            return FOMAML.task_meta_gradient(self, params, nontrainable, task,
                                             seed)
        return super().task_meta_gradient(params, nontrainable, task, seed)
