"""Warp layers inside a task learner, and the task/warp split of its
trainable variables (WarpGrad section 2.1)."""

import keras

from tfmeta.layers import WarpLayer


def _children(layer):
    """The layers ``layer`` holds: a model's ``layers``, else the layers among
    its public attributes (a wrapper's ``layer``, lists of layers)."""
    if isinstance(layer, keras.Model):
        return list(layer.layers)
    found = []
    for name, value in vars(layer).items():
        if name.startswith("_"):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        found += [v for v in values if isinstance(v, keras.layers.Layer)]
    return found


def warp_layers(learner):
    """The ``WarpLayer`` instances inside ``learner`` (outermost only), in
    the order of its layers.

    Args:
      learner: a built Keras model.
    """
    found, seen = [], set()

    def visit(layer):
        for sub in _children(layer):
            if id(sub) in seen:
                continue
            seen.add(id(sub))
            if isinstance(sub, WarpLayer):
                found.append(sub)
            else:
                visit(sub)

    visit(learner)
    return found


def partition(learner):
    """``(task_variables, warp_variables)``: the learner's trainable variables
    split by the ``WarpLayer`` mark, each in ``trainable_variables`` order.

    A warp layer's variables are warp parameters phi except those it lists
    in ``task_variables`` (e.g. ``ConvWarp(film=True)``'s FiLM task
    embeddings), which are task parameters.

    Args:
      learner: a built Keras model with warp layers.
    """
    warp_ids = set()
    for layer in warp_layers(learner):
        own = {id(v) for v in layer.trainable_variables}
        marked = list(layer.task_variables)
        stray = [getattr(v, "path", getattr(v, "name", "?"))
                 for v in marked if id(v) not in own]
        if stray:
            raise ValueError(
                f"warp layer {layer.name!r} lists task_variables {stray} "
                "that are not among its own trainable variables.")
        warp_ids |= own - {id(v) for v in marked}
    task = [v for v in learner.trainable_variables if id(v) not in warp_ids]
    warp = [v for v in learner.trainable_variables if id(v) in warp_ids]
    return task, warp


def check_warp_shapes(learner):
    """A warp layer must keep its input's shape (reported by name), unless
    it modulates weights (``keeps_shape = False``: Warp-RNN).

    Args:
      learner: a built Keras model.
    """
    for layer in warp_layers(learner):
        if not layer.keeps_shape:
            continue
        try:
            ins, outs = layer.input.shape, layer.output.shape
        except (AttributeError, ValueError):  # subclassed learners
            continue
        if tuple(ins) != tuple(outs):
            raise ValueError(
                f"warp layer {layer.name!r} maps shape {tuple(ins)} to "
                f"{tuple(outs)}; a warp layer must keep its input's shape.")
