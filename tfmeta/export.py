"""Export a meta-learner as a SavedModel, and load it back.

``export(meta, path)`` writes a SavedModel that needs TensorFlow only (no
tfmeta, no Keras at load time) with the signatures

* ``serving_default`` (also ``serve``): ``x`` -> ``predictions`` of the
  meta-learned initialization, inference mode.
* ``adapt``: ``support_x, support_y`` -> adapted task weights, one output per
  learner variable (named after its path, ``/`` -> ``_``), after
  ``eval_steps`` steps of the inner loop.
* ``adapt_and_predict``: ``support_x, support_y, query_x`` -> ``predictions``
  on the query inputs after adapting in-graph (inference mode, adapted
  batch-norm statistics), as ``meta.adapt(...)`` followed by ``predict``.
* ``adapt_steps`` / ``adapt_and_predict_steps``: the same with an extra int32
  scalar input ``steps`` (SavedModel signatures cannot have optional inputs;
  the loaded object's ``adapt``/``adapt_and_predict`` functions take ``steps``
  as an optional fourth/third argument).
* ``metadata``: no input -> ``metadata``, the JSON of ``assets/tfmeta.json``.

Adaptation runs the same compiled inner loop as training
(``tfmeta.inner_loop.adapt`` with the meta-learner's adaptation spec,
``meta.adaptation()``: inner optimizer, mask, minibatch size, ``eval_steps``,
learned step size; and its task loss). Its minibatch seed is fixed at ``(0, 0)``:
with full-batch inner loops (``inner_batch_size=None``) the export agrees
with ``meta.adapt``; with minibatches it draws other (fixed) minibatches than
``meta.adapt``, whose seed advances on every call. Parameters the spec's
``mask`` holds fixed stay fixed (WarpGrad's warp parameters; FiLM task
embeddings inside warp layers adapt), and a meta-learned step size (the
spec's ``step_size``: WarpGrad's ``learn_task_lr``, Meta-SGD's per-parameter
rates) is used at its value at export time (also in ``tfmeta.json`` as
``task_lr``; per-parameter rates as each variable's mean rate).

A ``MetaTransfer`` (``tfmeta.transfer``) exports instead the signature
``transfer`` (also ``serving_default``): ``support_x [B, N, ds]``,
``support_y [B, N, es]``, ``query_x [B, M, ...]`` -> ``predictions``
``[B, M, ...]`` of the query learners its encoder and decoder give the
supports (as ``meta.transfer``), and ``metadata``; ``assets/`` holds
``tfmeta.json``, the query learner as ``learner.keras`` (none for
``deep_kernel``) and ``meta.weights.h5``.

``assets/`` holds ``tfmeta.json`` (method, hyper-parameters, input and target
specs, versions, SHA-256 of the weights), ``learner.keras`` (the learner's
Keras config and weights) and ``meta.weights.h5`` (the meta-learner's own
weights), from which ``load(path)`` rebuilds a compiled meta-learner that can
continue meta-training.
"""

import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid

import keras
import numpy as np
import tensorflow as tf

from tfmeta import inner_loop, registry
from tfmeta.errors import ExportError  # noqa: F401 - re-exported

FORMAT_VERSION = 1
"""Version of the export layout, recorded in ``tfmeta.json``."""
METADATA_FILE = "tfmeta.json"
"""The metadata file under ``assets/``: method, hyper-parameters, versions,
weight fingerprint."""
LEARNER_FILE = "learner.keras"
"""The task learner (architecture and initialization) under ``assets/``, for
``load``."""
META_WEIGHTS_FILE = "meta.weights.h5"
"""The meta-learner's own weights (seed state, FineTune heads) under
``assets/``."""
ADAPT_SEED = (0, 0)
"""The fixed minibatch seed of the exported ``adapt`` signatures."""


# ------------------------------------------------------------------ helpers
def _is_rng_state(var):
    """A ``keras.random.SeedGenerator`` state (Dropout, LSTMCell): random
    number generator state, not a weight; Keras does not save it."""
    return getattr(var, "path", getattr(var, "name", "")).rsplit(
        "/", 1)[-1].startswith("seed_generator_state")


def weights_fingerprint(variables):
    """SHA-256 over the variables' order, dtypes, shapes and values (not
    their names, which Keras may uniquify when a model is loaded twice),
    random number generator states left out (Keras does not save them).

    Args:
      variables: Keras or TensorFlow variables (or arrays), in order.
    """
    digest = hashlib.sha256()
    variables = [v for v in variables if not _is_rng_state(v)]
    for i, var in enumerate(variables):
        value = np.ascontiguousarray(np.asarray(keras.ops.convert_to_numpy(var)))
        digest.update(f"{i}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _signature_names(variables):
    """Signature-safe, unique output names derived from variable paths."""
    names = []
    for var in variables:
        name = re.sub(r"[^A-Za-z0-9_]", "_", getattr(var, "path", var.name))
        name = re.sub(r"^[^A-Za-z]+", "", name) or "variable"
        base, k = name, 1
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.append(name)
    return names


def adapted_weight_names(learner):
    """Output names of the ``adapt`` signature: the learner's trainable then
    non-trainable variables, named after their paths.

    Args:
      learner: the task learner (a Keras model).
    """
    return _signature_names(learner.trainable_variables
                            + learner.non_trainable_variables)


def _is_sparse_loss(loss_fn):
    names = [type(loss_fn).__name__, getattr(loss_fn, "__name__", ""),
             str(getattr(loss_fn, "name", "")),
             getattr(getattr(loss_fn, "fn", None), "__name__", "")]
    return any("sparse" in str(n).lower() for n in names)


def input_spec(learner):
    """``tf.TensorSpec`` of one batch of learner inputs (batch axis None).

    Args:
      learner: a Keras model with exactly one ``keras.Input``.
    """
    inputs = getattr(learner, "inputs", None)
    if not inputs or len(inputs) != 1:
        raise ValueError(
            "export needs a learner with one keras.Input (a Sequential or "
            "functional model); got "
            f"{'no' if not inputs else len(inputs)} inputs.")
    shape = (None,) + tuple(inputs[0].shape[1:])
    return tf.TensorSpec(shape, tf.as_dtype(inputs[0].dtype), name="x")


def target_spec_of(meta, x_spec):
    """Targets: int labels for sparse losses, else floats shaped as outputs.

    Args:
      meta: the compiled meta-learner (its task loss decides).
      x_spec: ``input_spec`` of its learner.
    """
    out = meta.learner.compute_output_spec(keras.KerasTensor(x_spec.shape,
                                                             x_spec.dtype.name))
    if _is_sparse_loss(meta.task_loss_fn):
        return tf.TensorSpec((None,) + tuple(out.shape[1:-1]), tf.int32)
    return tf.TensorSpec((None,) + tuple(out.shape[1:]), tf.as_dtype(out.dtype))


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def _spec_dict(spec):
    return {"shape": list(spec.shape.as_list()), "dtype": spec.dtype.name}


# ---------------------------------------------------------- the tf.Module
class _Untracked:
    """Plain attribute holder that ``tf.Module`` does not track."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class _ExportModule(tf.Module):
    """The learner's weights as plain ``tf.Variable``s plus the functions."""

    def __init__(self, meta, x_spec, y_spec, metadata_json):
        super().__init__(name="tfmeta_export")
        learner = meta.learner
        spec = meta.adaptation()
        self.params = [tf.Variable(v.numpy(), trainable=False,
                                   name=_signature_names([v])[0])
                       for v in learner.trainable_variables]
        self.nontrainable = [tf.Variable(v.numpy(), trainable=False,
                                         name=_signature_names([v])[0])
                             for v in learner.non_trainable_variables]
        names = adapted_weight_names(learner)
        self._param_names = names[:len(self.params)]
        self._nontrainable_names = names[len(self.params):]
        update = spec.optimizer
        if isinstance(spec.step_size, (list, tuple)):
            # Per-parameter learned rates (Meta-SGD): their values now, in
            # variables of this module, read by the inner SGD as a list.
            self.task_lr = [
                tf.Variable(keras.ops.convert_to_numpy(a), trainable=False,
                            name=f"task_lr_{i}")
                for i, a in enumerate(spec.step_size)]
            update = update.with_learning_rate(
                lambda step: list(self.task_lr))
        elif spec.step_size is not None:
            # A meta-learned step size (WarpGrad's task_lr): its value now, in
            # a variable of this module (the meta-learner's is not saved).
            self.task_lr = tf.Variable(
                keras.ops.convert_to_numpy(spec.step_size), trainable=False,
                name="task_lr")
            update = update.with_learning_rate(lambda step: self.task_lr)
        # Untracked: only ``params``/``nontrainable`` are saved (tracking the
        # Keras learner would store its variables a second time).
        self._keras = _Untracked(learner=learner, loss_fn=meta.task_loss_fn,
                                 update=update, mask=spec.mask)
        self._batch_size = spec.eval_batch_size
        self._sampling = spec.sampling
        if spec.inner_state is not None:
            # A carried inner optimizer state (carry_inner_state): its values
            # now, which every adaptation starts from.
            opt_state, updates = inner_loop.carried_inner_state(spec)
            self.inner_slots = [[tf.Variable(t, trainable=False,
                                             name=f"inner_state_{k}_{i}")
                                 for i, t in enumerate(slot)]
                                for k, slot in enumerate(opt_state)]
            self.inner_updates = tf.Variable(updates, trainable=False,
                                             name="inner_updates")
        else:
            self.inner_slots, self.inner_updates = None, None
        self._eval_steps = int(spec.eval_steps)
        self._compute_dtype = learner.compute_dtype
        self._x_spec, self._y_spec = x_spec, y_spec
        self.metadata_json = tf.Variable(metadata_json, trainable=False,
                                         name="metadata")

        sx = tf.TensorSpec(x_spec.shape, x_spec.dtype, name="support_x")
        sy = tf.TensorSpec(y_spec.shape, y_spec.dtype, name="support_y")
        qx = tf.TensorSpec(x_spec.shape, x_spec.dtype, name="query_x")
        x = tf.TensorSpec(x_spec.shape, x_spec.dtype, name="x")
        steps = tf.TensorSpec([], tf.int32, name="steps")
        self.serve = tf.function(self._serve, input_signature=[x])
        self.metadata = tf.function(self._metadata, input_signature=[])
        # The inner loop is traced once per function, with ``steps`` as an
        # input; the default-steps forms call those concrete functions.
        self._adapt_steps = tf.function(
            self._adapt, input_signature=[sx, sy, steps]
        ).get_concrete_function()
        self._adapt_and_predict_steps = tf.function(
            self._adapt_and_predict, input_signature=[sx, sy, qx, steps]
        ).get_concrete_function()
        self.adapt = tf.function(self._adapt_default_steps)
        self.adapt_and_predict = tf.function(
            self._adapt_and_predict_default_steps)
        # Trace both call forms so the loaded functions take steps optionally.
        for args in ((sx, sy), (sx, sy, steps)):
            self.adapt.get_concrete_function(*args)
        for args in ((sx, sy, qx), (sx, sy, qx, steps)):
            self.adapt_and_predict.get_concrete_function(*args)
        self.signature_functions = {
            "serving_default": self.serve.get_concrete_function(),
            "serve": self.serve.get_concrete_function(),
            "adapt": self.adapt.get_concrete_function(sx, sy),
            "adapt_steps": self._adapt_steps,
            "adapt_and_predict": self.adapt_and_predict.get_concrete_function(
                sx, sy, qx),
            "adapt_and_predict_steps": self._adapt_and_predict_steps,
            "metadata": self.metadata.get_concrete_function(),
        }

    def _default(self, steps):
        return tf.constant(self._eval_steps) if steps is None else steps

    def _adapt_default_steps(self, support_x, support_y, steps=None):
        return self._adapt_steps(support_x, support_y, self._default(steps))

    def _adapt_and_predict_default_steps(self, support_x, support_y, query_x,
                                         steps=None):
        return self._adapt_and_predict_steps(support_x, support_y, query_x,
                                             self._default(steps))

    def _state(self):
        return ([tf.convert_to_tensor(v) for v in self.params],
                [tf.convert_to_tensor(v) for v in self.nontrainable])

    def _check(self, x, spec):
        """Refuse inputs whose shape does not fit (signatures do not check
        shapes themselves when called)."""
        return tf.ensure_shape(x, spec.shape)

    def _cast(self, x):
        return tf.cast(x, self._compute_dtype) if x.dtype.is_floating else x

    def _predict(self, params, nontrainable, x):
        pred, _ = self._keras.learner.stateless_call(
            params, nontrainable, self._cast(x), training=False)
        return pred

    def _serve(self, x):
        params, nontrainable = self._state()
        x = self._check(x, self._x_spec)
        return {"predictions": self._predict(params, nontrainable, x)}

    def _run_inner_loop(self, support_x, support_y, steps):
        support_x = self._check(support_x, self._x_spec)
        support_y = self._check(support_y, self._y_spec)
        checks = [
            tf.debugging.assert_positive(
                steps, message="steps must be a positive integer"),
            tf.debugging.assert_positive(
                tf.shape(support_x)[0], message="support_x holds no examples"),
            tf.debugging.assert_equal(
                tf.shape(support_x)[0], tf.shape(support_y)[0],
                message="support_x and support_y differ in their number of "
                        "examples")]
        # The checks must run before the inner loop, which would otherwise
        # fail first with a broadcasting error that names neither input.
        with tf.control_dependencies(checks):
            support_x = tf.identity(support_x)
            support_y = tf.identity(support_y)
            steps = tf.identity(steps)
        params, nontrainable = self._state()
        result = inner_loop.adapt(
            self._keras.learner, self._keras.loss_fn, self._keras.update,
            params, nontrainable,
            self._cast(support_x), support_y, steps,
            batch_size=self._batch_size,
            seed=tf.constant(ADAPT_SEED, tf.int64),
            mask=self._keras.mask,  # e.g. WarpGrad: warp layers stay fixed
            opt_state=None if self.inner_slots is None else tuple(
                [tf.convert_to_tensor(v) for v in slot]
                for slot in self.inner_slots),
            step_offset=0 if self.inner_updates is None
            else tf.convert_to_tensor(self.inner_updates),
            sampling=self._sampling)
        return result

    def _adapt(self, support_x, support_y, steps):
        result = self._run_inner_loop(support_x, support_y, steps)
        out = dict(zip(self._param_names, result.params))
        out.update(zip(self._nontrainable_names, result.nontrainable))
        return out

    def _adapt_and_predict(self, support_x, support_y, query_x, steps):
        result = self._run_inner_loop(support_x, support_y, steps)
        query_x = self._check(query_x, self._x_spec)
        return {"predictions": self._predict(
            result.params, result.nontrainable, query_x)}

    def _metadata(self):
        return {"metadata": tf.convert_to_tensor(self.metadata_json)}


# ----------------------------------------------------------------- export
def _metadata(meta, x_spec, y_spec):
    import tfmeta

    config = meta.get_config()
    step_size = meta.adaptation().step_size
    hyper = {k: v for k, v in config.items() if k != "learner"}
    return {
        "format_version": FORMAT_VERSION,
        "method": type(meta).__name__,
        "class": f"{type(meta).__module__}.{type(meta).__qualname__}",
        "hyper_parameters": _json_safe(hyper),
        "compile": _json_safe(_compile_config(meta)),
        "learner": {"name": meta.learner.name,
                    "class": type(meta.learner).__name__,
                    "num_trainable": len(meta.learner.trainable_variables),
                    "num_non_trainable":
                        len(meta.learner.non_trainable_variables),
                    "dtype_policy": str(meta.learner.dtype_policy.name)},
        "input_spec": _spec_dict(x_spec),
        "target_spec": _spec_dict(y_spec),
        "adapt_seed": list(ADAPT_SEED),
        "weights_sha256": weights_fingerprint(meta.learner.variables),
        "task_lr": _step_size_json(step_size),
        "versions": {"tfmeta": tfmeta.__version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__},
        "files": [LEARNER_FILE, META_WEIGHTS_FILE],
    }


def _step_size_json(step_size):
    """``task_lr`` in ``tfmeta.json``: ``None``, the learned scalar step
    size, or for per-parameter rates (Meta-SGD) the mean rate of each
    variable (the rates themselves are in the SavedModel and
    ``meta.weights.h5``)."""
    if step_size is None:
        return None
    if isinstance(step_size, (list, tuple)):
        return [float(keras.ops.convert_to_numpy(a).mean()) for a in step_size]
    return float(keras.ops.convert_to_numpy(step_size))


def _compile_config(meta):
    """The outer optimizer and task loss, serialized (None if not possible)."""
    out = {}
    try:
        out["optimizer"] = keras.saving.serialize_keras_object(meta.optimizer)
    except Exception:  # noqa: BLE001 - custom optimizers: load() reports it
        out["optimizer"] = None
    try:
        loss = meta.loss if meta.loss is not None else meta.task_loss_fn
        out["loss"] = keras.saving.serialize_keras_object(loss)
        json.dumps(out["loss"])
    except Exception:  # noqa: BLE001 - custom losses: load() reports it
        out["loss"] = None
    return out


def _check_exportable(meta, path, overwrite):
    # A MetaLearner is what export needs: a Keras model with an adaptation
    # spec (no import of meta_learner, which imports this module).
    if not (isinstance(meta, keras.Model)
            and callable(getattr(meta, "adaptation", None))):
        raise TypeError(f"export needs a tfmeta MetaLearner, got "
                        f"{type(meta).__name__}.")
    if meta.task_loss_fn is None:
        raise RuntimeError(
            f"{type(meta).__name__} is not compiled: export needs the task "
            "loss; call compile(optimizer=..., loss=...) first.")
    if getattr(meta, "multi_head", False):
        raise NotImplementedError(
            f"{type(meta).__name__}(multi_head=True) cannot be exported yet: "
            "the exported adapt would start every task from the stored head "
            "instead of a fresh one (nothing was written). Use adapt(), "
            "which draws a fresh head.")
    _check_target(path, overwrite)


def _check_target(path, overwrite):
    """Refuses an export path that is a file, or a non-empty directory
    unless ``overwrite`` and it is a previous tfmeta export (nothing is
    written either way)."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"export path {path!r} is a file, not a directory.")
    if os.path.isdir(path) and os.listdir(path):
        if not overwrite:
            raise FileExistsError(
                f"export path {path!r} exists and is not empty; pass "
                "overwrite=True to replace a previous tfmeta export there "
                "(nothing was written).")
        check_replaceable(path)


# What tf.saved_model.save and export() write at the top of an export.
EXPORT_ENTRIES = {"saved_model.pb", "fingerprint.pb", "variables", "assets"}
"""The top-level entries of an export; ``overwrite`` replaces a directory
holding only these."""


def check_replaceable(path):
    """Refuses to replace ``path`` unless it is a previous tfmeta export:
    ``assets/tfmeta.json`` is there and nothing but what an export holds.

    Args:
      path: the export directory that would be replaced.
    """
    if not os.path.isfile(os.path.join(path, "assets", METADATA_FILE)):
        raise FileExistsError(
            f"export path {path!r} is not a tfmeta export (it has no "
            f"assets/{METADATA_FILE}); overwrite only replaces a previous "
            "export, so nothing was touched: choose another path.")
    others = sorted(set(os.listdir(path)) - EXPORT_ENTRIES)
    if others:
        raise FileExistsError(
            f"export path {path!r} holds files that are not part of a tfmeta "
            f"export ({', '.join(others[:5])}{', ...' if len(others) > 5 else ''}"
            "); overwrite only replaces a previous export, so nothing was "
            "touched: choose another path.")


def export(meta, path=None, overwrite=False, target_spec=None):
    """Write ``meta`` as a SavedModel to ``path``; returns the path.

    Args:
      meta: a compiled ``MetaLearner``.
      path: directory (default ``saved_models/<meta.name>`` under the current
        directory).
      overwrite: replace a previous tfmeta export at ``path`` (a directory
        with ``assets/tfmeta.json`` and only an export's files); any other
        non-empty directory is refused, untouched. The export is written to
        a temporary sibling directory first and swapped in, so a failure
        leaves an existing export untouched.
      target_spec: ``tf.TensorSpec`` of a batch of support targets, when the
        default (int labels for sparse losses, else floats shaped as the
        learner's outputs) is wrong.
    """
    path = os.path.abspath(path or os.path.join("saved_models", meta.name))
    if is_transfer(meta):
        return _export_transfer(meta, path, overwrite)
    _check_exportable(meta, path, overwrite)
    x_spec = input_spec(meta.learner)
    if target_spec is None:
        y_spec = target_spec_of(meta, x_spec)
    elif isinstance(target_spec, tf.TensorSpec):
        y_spec = target_spec
    else:
        raise TypeError(f"target_spec must be a tf.TensorSpec, got "
                        f"{type(target_spec).__name__}.")
    metadata = _metadata(meta, x_spec, y_spec)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        staging = os.path.join(tmp, "staging")
        os.makedirs(staging)
        meta.learner.save(os.path.join(staging, LEARNER_FILE))
        meta.save_weights(os.path.join(staging, META_WEIGHTS_FILE))
        text = json.dumps(metadata, indent=2, sort_keys=True)
        with open(os.path.join(staging, METADATA_FILE), "w") as f:
            f.write(text + "\n")
        module = _ExportModule(meta, x_spec, y_spec, text)
        module.assets = [tf.saved_model.Asset(os.path.join(staging, name))
                         for name in (METADATA_FILE, LEARNER_FILE,
                                      META_WEIGHTS_FILE)]
        out = os.path.join(tmp, "export")
        tf.saved_model.save(module, out, signatures=module.signature_functions)
        _swap_in(out, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


# ------------------------------------------------------- meta-transfer
def is_transfer(meta):
    """Whether ``meta`` is a meta-transfer model (``tfmeta.MetaTransfer``):
    a Keras model with an encoder and ``predict_query``.

    Args:
      meta: any object.
    """
    return isinstance(meta, keras.Model) and hasattr(meta, "encoder") \
        and callable(getattr(meta, "predict_query", None))


def transfer_specs(meta):
    """``tf.TensorSpec``s of ``support_x``, ``support_y`` and ``query_x``
    (task and point axes ``None``; float32, cast to the model's compute
    dtype in the graph).

    Args:
      meta: a ``tfmeta.MetaTransfer``.
    """
    ds, es = meta.encoder.support_dims
    if meta.predicts_query:
        query = (meta.encoder.query_dims[0],)
    else:
        query = tuple(input_spec(meta.query_learner).shape[1:])
    return tuple(tf.TensorSpec((None, None) + tuple(shape), tf.float32,
                               name=name)
                 for name, shape in (("support_x", (ds,)),
                                     ("support_y", (es,)),
                                     ("query_x", query)))


def _transfer_metadata(meta, specs):
    import tfmeta

    try:
        hyper = meta.get_config()
    except NotImplementedError:
        hyper = None   # built from layers: serves, but load() cannot rebuild
    files = [META_WEIGHTS_FILE] + ([] if meta.predicts_query
                                   else [LEARNER_FILE])
    return {
        "format_version": FORMAT_VERSION,
        "kind": "transfer",
        "method": type(meta).__name__,
        "class": f"{type(meta).__module__}.{type(meta).__qualname__}",
        "encoder": meta.encoder.name,
        "hyper_parameters": _json_safe(hyper),
        "compile": _json_safe(_compile_config(meta)),
        "signature_inputs": {s.name: _spec_dict(s) for s in specs},
        "weights_sha256": weights_fingerprint(meta.meta_variables),
        "versions": {"tfmeta": tfmeta.__version__, "tensorflow": tf.__version__,
                     "keras": keras.__version__},
        "files": files,
    }


def _export_transfer(meta, path, overwrite):
    """``export`` of a ``MetaTransfer``: the ``transfer`` signature through
    Keras' ``ExportArchive`` (which tracks the encoder's and decoder's
    variables), then the assets; written aside and swapped in."""
    if meta.task_loss_fn is None:
        raise RuntimeError("MetaTransfer is not compiled: export records the "
                           "query loss; call compile(optimizer=..., loss=...) "
                           "first.")
    _check_target(path, overwrite)
    specs = transfer_specs(meta)
    metadata = _transfer_metadata(meta, specs)
    text = json.dumps(metadata, indent=2, sort_keys=True)
    dtype = meta.compute_dtype

    def transfer(support_x, support_y, query_x):
        # Signatures called with wrong shapes do not check them themselves.
        support_x, support_y, query_x = (
            tf.ensure_shape(t, spec.shape, name=spec.name)
            for t, spec in zip((support_x, support_y, query_x), specs))
        shape = tf.shape
        checks = [
            tf.debugging.assert_positive(
                shape(support_x)[1], message="the support is empty"),
            tf.debugging.assert_equal(
                shape(support_x)[:2], shape(support_y)[:2],
                message="support_x and support_y differ in their number of "
                        "tasks or points"),
            tf.debugging.assert_equal(
                shape(support_x)[0], shape(query_x)[0],
                message="support and query differ in their number of tasks")]
        with tf.control_dependencies(checks):   # identity: cast may be a no-op
            support_x, support_y, query_x = (
                tf.identity(tf.cast(t, dtype))
                for t in (support_x, support_y, query_x))
        return {"predictions": meta.predict_query(support_x, support_y,
                                                  query_x)}

    archive = keras.export.ExportArchive()
    archive.track(meta)
    archive.add_endpoint("transfer", transfer, input_signature=list(specs))
    archive.add_endpoint("metadata", lambda: {"metadata": tf.constant(text)},
                         input_signature=[])
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        out = os.path.join(tmp, "export")
        archive.write_out(out, verbose=False)
        assets = os.path.join(out, "assets")
        os.makedirs(assets, exist_ok=True)
        with open(os.path.join(assets, METADATA_FILE), "w") as f:
            f.write(text + "\n")
        meta.save_weights(os.path.join(assets, META_WEIGHTS_FILE))
        if not meta.predicts_query:
            meta.query_learner.save(os.path.join(assets, LEARNER_FILE))
        _swap_in(out, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _load_transfer(path, metadata, compile):
    """``load`` of a ``MetaTransfer`` export."""
    assets = os.path.join(path, "assets")
    if metadata.get("hyper_parameters") is None:
        raise ExportError(
            f"{path!r} holds a MetaTransfer built from encoder/decoder layers "
            "(no constructor config): serve it with tf.saved_model.load, or "
            "rebuild the model yourself and load_weights(assets/"
            f"{META_WEIGHTS_FILE}).")
    for name in metadata.get("files", [META_WEIGHTS_FILE]):
        if not os.path.isfile(os.path.join(assets, name)):
            raise ExportError(f"{path!r} is not a complete export: "
                              f"assets/{name} is missing.")
    cls = registry.by_class_name(metadata["method"])
    learner = None
    if LEARNER_FILE in metadata.get("files", []):
        try:
            learner = keras.saving.load_model(
                os.path.join(assets, LEARNER_FILE), compile=False)
        except Exception as err:  # noqa: BLE001 - re-raised with the file
            raise ExportError(f"assets/{LEARNER_FILE} of {path!r} cannot be "
                              f"loaded (corrupt?): {err}") from err
    meta = cls.from_config(dict(metadata["hyper_parameters"], learner=learner))
    loss = metadata.get("compile", {}).get("loss")
    if compile and loss:
        optimizer = metadata["compile"].get("optimizer")
        meta.compile(optimizer=(keras.saving.deserialize_keras_object(optimizer)
                                if optimizer else "adam"),
                     loss=keras.saving.deserialize_keras_object(loss))
    try:
        meta.load_weights(os.path.join(assets, META_WEIGHTS_FILE))
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ExportError(f"assets/{META_WEIGHTS_FILE} of {path!r} cannot be "
                          f"loaded (corrupt?): {err}") from err
    if weights_fingerprint(meta.meta_variables) != metadata["weights_sha256"]:
        raise ExportError(f"the weights loaded from {path!r} do not match the "
                          "export's SHA-256 fingerprint: the export is corrupt.")
    return meta


def _swap_in(new, path):
    """Move directory ``new`` to ``path``, replacing it atomically-ish: the
    old export is renamed aside first and restored if the move fails."""
    if not os.path.exists(path):
        os.replace(new, path)
        return
    if os.listdir(path):
        check_replaceable(path)  # again: it may have changed while we wrote
    old = f"{path}.old-{uuid.uuid4().hex[:8]}"
    os.replace(path, old)
    try:
        os.replace(new, path)
    except BaseException:
        os.replace(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------- load
def read_metadata(path):
    """The ``assets/tfmeta.json`` of an export, as a dict.

    Args:
      path: the export directory.
    """
    file = os.path.join(path, "assets", METADATA_FILE)
    if not os.path.isfile(file):
        raise ExportError(
            f"{path!r} is not a tfmeta export: {file} is missing.")
    try:
        with open(file) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise ExportError(f"{file} is corrupt (not valid JSON): {err}") from err


def load(path, compile=True):
    """Rebuild the meta-learner of an export so meta-training can continue.

    The learner comes from ``assets/learner.keras``, the meta-learner's class
    (looked up in the method registry by the name ``tfmeta.json`` records:
    a method of your own must be registered with ``tfmeta.register``) and
    hyper-parameters from ``assets/tfmeta.json``, its own weights (seed
    state, FineTune heads) from ``assets/meta.weights.h5``. With
    ``compile=True`` it is compiled with the exported outer optimizer (fresh
    state: slot variables such as momentum are not exported) and task loss;
    if those could not be serialized, ``compile`` is skipped with a warning
    and you must call ``compile`` yourself. Custom layers, losses or
    optimizers must be registered Keras serializables (or passed through
    ``keras.saving.custom_object_scope``).

    Args:
      path: the export directory (``meta.export()``'s result).
      compile: compile with the exported outer optimizer and loss (default
        ``True``).
    """
    import warnings

    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ExportError(f"no export at {path!r}: not a directory.")
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ExportError(f"{path!r} is not a complete export: saved_model.pb "
                          "is missing.")
    metadata = read_metadata(path)
    for key in ("method", "hyper_parameters", "weights_sha256"):
        if key not in metadata:
            raise ExportError(f"{os.path.join(path, 'assets', METADATA_FILE)} "
                              f"is corrupt: it has no {key!r} entry.")
    if metadata.get("kind") == "transfer":
        return _load_transfer(path, metadata, compile)
    assets = os.path.join(path, "assets")
    for name in (LEARNER_FILE, META_WEIGHTS_FILE):
        if not os.path.isfile(os.path.join(assets, name)):
            raise ExportError(f"{path!r} is not a complete export: "
                              f"assets/{name} is missing.")
    cls = registry.by_class_name(metadata["method"])
    if cls is None:
        known = sorted(m.cls.__name__ for m in registry.methods().values())
        raise ExportError(
            f"{path!r}: unknown tfmeta method {metadata['method']!r}; a method "
            f"loads by its registered class name (tfmeta.register): {known}.")
    try:
        learner = keras.saving.load_model(os.path.join(assets, LEARNER_FILE),
                                          compile=False)
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ExportError(f"assets/{LEARNER_FILE} of {path!r} cannot be "
                          f"loaded (corrupt?): {err}") from err
    config = dict(metadata["hyper_parameters"], learner=learner)
    meta = cls.from_config(config)
    compile_config = metadata.get("compile", {})
    if compile:
        if compile_config.get("optimizer") and compile_config.get("loss"):
            meta.compile(
                optimizer=keras.saving.deserialize_keras_object(
                    compile_config["optimizer"]),
                loss=keras.saving.deserialize_keras_object(
                    compile_config["loss"]))
        else:
            warnings.warn(
                f"the export at {path!r} has no serializable outer optimizer "
                "or task loss; call compile(optimizer=..., loss=...) before "
                "fit.", stacklevel=2)
    try:
        meta.load_weights(os.path.join(assets, META_WEIGHTS_FILE))
    except Exception as err:  # noqa: BLE001 - re-raised with the file named
        raise ExportError(f"assets/{META_WEIGHTS_FILE} of {path!r} cannot be "
                          f"loaded (corrupt?): {err}") from err
    fingerprint = weights_fingerprint(meta.learner.variables)
    if fingerprint != metadata["weights_sha256"]:
        raise ExportError(
            f"the weights loaded from {path!r} do not match the export's "
            f"SHA-256 fingerprint ({fingerprint} != "
            f"{metadata['weights_sha256']}): the export is corrupt.")
    return meta
