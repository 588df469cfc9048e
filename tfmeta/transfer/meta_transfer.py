"""``MetaTransfer``: the meta-transfer learner as a Keras model (eqs. 7-8,
Algorithm 1 of the gradient-based transfer paper).

One ``train_step`` is one meta-step over a task batch: every task's support
is encoded to a code ``z`` (``encoder``), ``z`` is decoded to the weights
``psi`` of the query learner (``decoder``), ``g_psi`` predicts the task's
query, and the mean query loss is minimized over the encoder's and
decoder's weights ``xi`` (through the encoder's gradient: second order for
the gradient encoders). Support and query may differ in shape:
``support_x [B, N, ds]``, ``support_y [B, N, es]``, ``query_x [B, M, ...]``,
``query_y [B, M, ...]``. The Keras template (checks, the outer step that
skips non-finite meta-steps and all-reduces the meta-gradient once under
``tf.distribute``, metrics) is ``tfmeta.meta_learner.MetaModel``'s, shared
with every other method; this class defines the meta-step
(``meta_gradient``) and the shape checks.
"""


import keras
import numpy as np
import tensorflow as tf

from tfmeta.registry import register
from tfmeta.meta_learner import (TASK_KEYS, MetaModel, MetaStep,
                                 compatible_shapes, flatten_tasks, shape_str,
                                 step_logs, unpack_tasks)
from tfmeta.transfer import functional as F
from tfmeta.transfer.decoder import Decoder


@register("transfer", "gradient-based meta-transfer: support and query from "
          "different families (cos -> sin)")
class MetaTransfer(MetaModel):
    """Meta-transfer: ``psi = decoder(encoder(support))``, loss of ``g_psi``
    on the query.

    Args:
      encoder: a name from ``tfmeta.transfer.ENCODERS`` or an encoder layer.
      decoder: ``None`` for the default ``Decoder`` (2-layer MLP, 128 units)
        or a ``Decoder`` of your own; must be ``None`` for ``deep_kernel``.
      query_learner: a built Keras model ``g``; its architecture is used with
        the decoded weights (its own weights only set the decoder's starting
        point and are never trained). ``None`` for ``deep_kernel``.
      k: code size for an encoder given by name (the task dimension where
        known: 2 for cos -> sin).
      support_dims: ``(ds, es)``, per-point sizes of ``support_x`` and
        ``support_y`` (needed unless the encoder is already built).
      query_dims: ``(dq, eq)`` for ``deep_kernel`` only.
      encoder_steps: gradient encoders only: CAVIA-style gradient steps on
        ``z`` (``None``: the encoder's default, 1; see ``GradientEncoder``).
      encoder_lr: gradient encoders only: the step size of those steps
        (``None``: the encoder's default, 1.0).
      first_order: gradient encoders only: stop the gradient through the
        encoder's gradient (``None``: the encoder's default, ``False``).
      support_loss: the gradient encoders' loss on the support ("mse").
      decoder_hidden: hidden width of the default decoder.
      seed: seed of the initializers of an encoder made by name and of the
        default decoder.
      name: the Keras model's name (default ``"meta_transfer"``).
      **encoder_options: more options for an encoder made by name (e.g.
        ``hidden``, ``activation``).

    ``compile(optimizer, loss)``: ``loss`` is the query learner's loss.
    Under a ``tf.distribute`` strategy (build and compile in its scope) the
    tasks of a meta-batch are split over the replicas and the meta-step
    equals one device's.

    ``get_config()`` / ``from_config(config)`` (used by ``tfmeta.export`` and
    ``tfmeta.load``) hold the constructor's arguments when the encoder was
    given by name and the decoder is the default; ``from_config`` takes the
    query learner as ``config["learner"]``.
    """

    def __init__(self, encoder, decoder=None, query_learner=None, *, k=None,
                 support_dims=None, query_dims=None, encoder_steps=None,
                 encoder_lr=None, first_order=None, support_loss=None,
                 decoder_hidden=128, seed=None, name="meta_transfer",
                 **encoder_options):
        super().__init__(name=name)
        from tfmeta.transfer import make_encoder

        self._constructor = None
        if isinstance(encoder, str) and decoder is None:
            self._constructor = dict(
                encoder=encoder, k=k, support_dims=_plain(support_dims),
                query_dims=_plain(query_dims), encoder_steps=encoder_steps,
                encoder_lr=encoder_lr, first_order=first_order,
                support_loss=support_loss, decoder_hidden=decoder_hidden,
                seed=seed, name=name, **_plain(encoder_options))

        gradient_options = {"steps": encoder_steps, "lr": encoder_lr,
                            "first_order": first_order,
                            "support_loss": support_loss}
        gradient_options = {k_: v for k_, v in gradient_options.items()
                            if v is not None}
        if isinstance(encoder, str):
            from tfmeta.transfer import GRADIENT_ENCODERS, ENCODERS
            if encoder in ENCODERS and encoder not in GRADIENT_ENCODERS \
                    and gradient_options:
                raise ValueError(
                    f"{sorted(gradient_options)} apply to the gradient "
                    f"encoders {GRADIENT_ENCODERS} only, not to {encoder!r}.")
            output_dim = None
            if encoder == "deep_kernel":
                output_dim = query_dims[1] if query_dims is not None else None
                if output_dim is None:
                    raise ValueError("the deep_kernel encoder predicts the "
                                     "query directly: give query_dims=(dq, eq).")
            encoder = make_encoder(encoder, k=k, output_dim=output_dim,
                                   seed=seed, **gradient_options,
                                   **encoder_options)
        elif not isinstance(encoder, keras.layers.Layer):
            raise TypeError("encoder must be a name from "
                            "tfmeta.transfer.ENCODERS or an encoder layer, got "
                            f"{type(encoder).__name__}.")
        elif gradient_options or encoder_options or k is not None:
            raise ValueError(
                "k, encoder_steps, encoder_lr, first_order, support_loss and "
                "encoder options configure an encoder made by name; set them "
                "on the encoder layer you passed instead.")
        self.encoder = encoder
        self.predicts_query = bool(getattr(encoder, "predicts_query", False))

        if self.predicts_query:
            if decoder is not None or query_learner is not None:
                raise ValueError(
                    "the deep_kernel encoder predicts the query itself: give "
                    "neither a decoder nor a query_learner.")
            if not encoder.built:
                if support_dims is None or query_dims is None:
                    raise ValueError("give support_dims=(ds, es) and "
                                     "query_dims=(dq, eq) to build deep_kernel.")
                encoder.build(support_dims, query_dims)
            self.decoder = None
            self.query_learner = None
        else:
            if query_learner is None:
                raise ValueError(
                    "query_learner is missing: give the Keras model g_psi whose "
                    "weights the decoder outputs.")
            if not isinstance(query_learner, keras.Model) or \
                    not query_learner.built:
                raise ValueError("query_learner must be a built keras.Model "
                                 "(give it a keras.Input).")
            if query_dims is not None:
                raise ValueError("query_dims is for deep_kernel only; the query "
                                 "learner defines the query shapes.")
            if not encoder.built:
                if support_dims is None:
                    raise ValueError("give support_dims=(ds, es), the sizes of "
                                     "a support point's input and target.")
                encoder.build(support_dims)
            self.query_learner = query_learner
            self.query_shapes, initial = F.model_params(query_learner)
            if decoder is None:
                decoder = Decoder(initial.size, hidden=decoder_hidden,
                                   initial_params=initial, seed=seed)
            if not decoder.built:
                decoder.build(encoder.k)
            if decoder.num_params != initial.size:
                raise ValueError(
                    f"the decoder outputs {decoder.num_params} parameters but "
                    f"the query learner has {initial.size}.")
            if decoder.code_dim != encoder.k:
                raise ValueError(f"the decoder takes codes of size "
                                 f"{decoder.code_dim} but the encoder's k is "
                                 f"{encoder.k}.")
            self.decoder = decoder
        self._transfer_function = None
        self._decode_function = None
        self.built = True

    # ----------------------------------------------------------- Keras API
    def get_config(self):
        """The constructor's arguments (without the query learner); only
        for an encoder given by name with the default decoder."""
        if self._constructor is None:
            raise NotImplementedError(
                "this MetaTransfer was built from encoder/decoder layers: "
                "only one made with encoder=<name> and the default decoder "
                "has a config (rebuild it yourself, then load_weights).")
        return dict(self._constructor)

    @classmethod
    def from_config(cls, config):
        """``MetaTransfer(**config)`` with ``config["learner"]`` (the query
        learner, ``None`` for ``deep_kernel``) as ``query_learner``."""
        config = dict(config)
        learner = config.pop("learner", None)
        return cls(query_learner=learner, **config)

    @property
    def meta_variables(self):
        """What meta-training updates: the encoder's and decoder's weights
        (``xi`` and the decoder's), never the query learner's template."""
        variables = list(self.encoder.trainable_variables)
        if self.decoder is not None:
            variables += self.decoder.trainable_variables
        return variables

    @property
    def support_dims(self):
        return self.encoder.support_dims

    def compile(self, optimizer="adam", loss=None, metrics=None,
                jit_compile=False, **kwargs):
        """Keras ``compile``; ``loss`` is the query learner's loss. XLA is
        off by default, as for the other meta-learners (not tested here).

        Args:
          optimizer: the outer optimizer (default ``"adam"``).
          loss: the query learner's loss, a Keras loss or its name (required).
          metrics: Keras metrics on the query predictions (default ``None``).
          jit_compile: XLA (default ``False``).
          **kwargs: the other ``keras.Model.compile`` arguments.
        """
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics,
                        jit_compile=jit_compile, **kwargs)
        self._transfer_function = None
        self._decode_function = None

    def task_loss(self, loss):
        """The query loss per point (``compile``'s ``loss``).

        Args:
          loss: a Keras loss or its name.
        """
        return F.per_example_loss(loss)

    def call(self, inputs, training=False):
        """Query predictions ``[B, M, ...]`` of a task batch (dict)."""
        tasks = unpack_tasks(inputs)
        return self.predict_query(tasks["support_x"], tasks["support_y"],
                                  tasks["query_x"])

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Keras ``compute_metrics``; for a task batch alone (as Keras
        builds the metrics' state from one), its flattened query targets
        and predictions (``call``'s ``[B, M, ...]``)."""
        if y is None and isinstance(x, dict) and "query_y" in x:
            y_pred = flatten_tasks(y_pred)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                     training=True):
        """Keras ``compute_loss`` (Keras builds its loss state with it), as
        ``compute_metrics``."""
        if y is None and isinstance(x, dict) and "query_y" in x:
            y_pred = flatten_tasks(y_pred)
        return super().compute_loss(x, y, y_pred, sample_weight, training)

    # --------------------------------------------------------- the method
    def decode(self, support_x, support_y):
        """``psi = M^D(M^E(support))``: flat query-learner weights ``[B, P]``
        (graph function; see ``query_weights`` for NumPy per layer).

        Args:
          support_x: support inputs ``[B, N, ds]``.
          support_y: support targets ``[B, N, es]``.
        """
        return self.decoder(self.encoder(support_x, support_y))

    def predict_query(self, support_x, support_y, query_x):
        """Query predictions ``[B, M, ...]`` (graph function).

        Args:
          support_x: support inputs ``[B, N, ds]``.
          support_y: support targets ``[B, N, es]``.
          query_x: query inputs ``[B, M, ...]``.
        """
        if self.predicts_query:
            return self.encoder(support_x, support_y, query_x)
        psi = self.decode(support_x, support_y)
        query_x = tf.cast(query_x, self.query_learner.compute_dtype) \
            if query_x.dtype.is_floating else query_x
        return F.call_with_params(self.query_learner, psi, query_x)

    def query_loss(self, tasks):
        """Mean query loss of a task batch and the predictions.

        Args:
          tasks: a task batch (dict of ``[B, ...]`` tensors).
        """
        pred = self.predict_query(tasks["support_x"], tasks["support_y"],
                                  tasks["query_x"])
        y = flatten_tasks(tasks["query_y"])
        losses = self.task_loss_fn(y, flatten_tasks(pred))
        return tf.reduce_mean(losses), pred

    def meta_gradient(self, tasks):
        """The meta-step's gradient (eq. 8): ``(grads, logs, predictions)``
        with ``logs["loss"]`` the mean query loss; gradients of variables
        the loss does not reach are zeros (e.g. the encoder's with
        ``first_order=True``).

        Args:
          tasks: a task batch (dict of ``[B, ...]`` tensors).
        """
        variables = self.meta_variables
        with tf.GradientTape() as tape:
            loss, pred = self.query_loss(tasks)
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else g
                 for g, v in zip(grads, variables)]
        return grads, {"loss": loss}, pred

    def meta_step(self, tasks):
        """One meta-step: ``meta_gradient``, applied by ``apply_if_finite``.

        Args:
          tasks: a checked task batch (dict of ``[B, ...]`` tensors).
        """
        grads, logs, pred = self.meta_gradient(tasks)
        logs = dict(logs)
        logs["loss"] = self.apply_if_finite(
            grads, logs["loss"], tf.shape(tasks["support_x"])[0])
        return MetaStep(logs, pred)

    # ------------------------------------------------------------ test
    def test_step(self, data):
        """The query loss and metrics of a task batch (no outer step)."""
        tasks = self.prepare_tasks(data)
        loss, pred = self.query_loss(tasks)
        results = self.update_metrics({"loss": loss}, tasks["query_y"], pred,
                                      extra=False)
        return step_logs({k: v for k, v in results.items()
                          if k != "grad_norm"})

    # ---------------------------------------------------------- checks
    def check_tasks(self, shapes):
        """Static checks of a task batch's shapes (``{key: tensor or
        shape}``; the query keys may be missing, keys besides ``TASK_KEYS``
        are not checked) against the encoder and the query learner:
        ``ValueError`` naming the problem.

        Args:
          shapes: ``{key: tensor or shape}`` of a task batch.
        """
        shapes = {k: tuple(tf.TensorShape(getattr(s, "shape", s)).as_list())
                  for k, s in shapes.items() if k in TASK_KEYS}
        for key, s in shapes.items():
            least = {"support_x": 3, "support_y": 3, "query_x": 3,
                     "query_y": 2}[key]
            if len(s) < least or (key.startswith("support") and len(s) > 3):
                raise ValueError(
                    f"{key} has shape {shape_str(s)}; it must be [tasks, "
                    "points, values]" + (" (rank 3)." if key.startswith(
                        "support") else ", or [tasks, points] for labels."
                        if key == "query_y" else "."))
        metas = {s[0] for s in shapes.values() if s[0] is not None}
        if len(metas) > 1:
            raise ValueError(
                "support and query disagree on the number of tasks: "
                + ", ".join(f"{k} {shape_str(s)}" for k, s in shapes.items()))
        for split in ("support", "query"):
            xs, ys = shapes.get(f"{split}_x"), shapes.get(f"{split}_y")
            if xs is not None and xs[1] == 0:
                raise ValueError(f"the {split} is empty ({split}_x has shape "
                                 f"{shape_str(xs)}).")
            if xs is not None and ys is not None \
                    and not compatible_shapes(xs[1:2], ys[1:2]):
                raise ValueError(f"{split}_x has {xs[1]} points per task but "
                                 f"{split}_y has {ys[1]}.")
        ds, es = self.encoder.support_dims
        got = (shapes["support_x"][2], shapes["support_y"][2])
        if not compatible_shapes(got, (ds, es)):
            raise ValueError(
                f"support points have {got[0]} input and {got[1]} target "
                f"values but the {self.encoder.name} was built for {ds} and "
                f"{es} (support_dims).")
        qx, qy = shapes.get("query_x"), shapes.get("query_y")
        if self.predicts_query:
            dq, eq = self.encoder.query_dims
            if qx is not None and not compatible_shapes(qx[2:], (dq,)):
                raise ValueError(f"query_x has per-point shape "
                                 f"{shape_str(qx[2:])} but the deep kernel "
                                 f"was built for ({dq},) (query_dims).")
            if qy is not None and not any(compatible_shapes(qy[2:], s)
                                          for s in ((eq,), (), (1,))):
                raise ValueError(f"query_y has per-point shape "
                                 f"{shape_str(qy[2:])} but the deep kernel "
                                 f"was built for ({eq},) (query_dims; or one "
                                 "label per point).")
            return
        if qx is not None:
            self._check_query_learner(qx[2:], None if qy is None else qy[2:])

    def _check_query_learner(self, x_shape, y_shape):
        learner = self.query_learner
        inputs = getattr(learner, "inputs", None)
        if inputs:
            expected = tuple(inputs[0].shape[1:])
            if not compatible_shapes(x_shape, expected):
                raise ValueError(
                    f"query_x has per-point shape {shape_str(x_shape)} but the "
                    f"query learner expects inputs of shape "
                    f"{shape_str(expected)}.")
        try:
            out = learner.compute_output_spec(
                keras.KerasTensor((None,) + tuple(x_shape)))
        except Exception as err:  # noqa: BLE001 - reported with context
            raise ValueError(f"the query learner cannot take query_x points "
                             f"of shape {shape_str(x_shape)}: {err}") from err
        out_shape = tuple(out.shape[1:])
        if y_shape is not None and not (
                compatible_shapes(y_shape, out_shape)
                or compatible_shapes(y_shape, out_shape[:-1])
                or compatible_shapes(y_shape, out_shape[:-1] + (1,))):
            raise ValueError(
                f"query_y has per-point shape {shape_str(y_shape)} but the "
                f"query learner outputs {shape_str(out_shape)} per point "
                "(targets must match, or be one label per point).")

    # ------------------------------------------------------------ use
    def _floats(self, **arrays):
        out = {}
        for key, value in arrays.items():
            t = tf.convert_to_tensor(value)
            out[key] = tf.cast(t, self.compute_dtype) \
                if t.dtype.is_floating else t
        self.check_tasks({k: v.shape for k, v in out.items()})
        return out

    def transfer(self, support_x, support_y, query_x):
        """Predictions on ``query_x [B, M, ...]`` of the query learners that
        the supports ``support_x [B, N, ds]``, ``support_y [B, N, es]``
        decode to (NumPy ``[B, M, ...]``).

        Args:
          support_x: support inputs ``[B, N, ds]``.
          support_y: support targets ``[B, N, es]``.
          query_x: query inputs ``[B, M, ...]``.
        """
        t = self._floats(support_x=support_x, support_y=support_y,
                         query_x=query_x)
        if self._transfer_function is None:
            self._transfer_function = tf.function(self.predict_query,
                                                  reduce_retracing=True)
        return self._transfer_function(
            t["support_x"], t["support_y"], t["query_x"]).numpy()

    def query_weights(self, support_x, support_y):
        """The decoded query learners' weights: for each task, a list of
        NumPy arrays in the order of ``query_learner.trainable_variables``.

        Args:
          support_x: support inputs ``[B, N, ds]``.
          support_y: support targets ``[B, N, es]``.
        """
        if self.predicts_query:
            raise ValueError("the deep_kernel encoder has no query learner "
                             "weights: it predicts the query directly.")
        t = self._floats(support_x=support_x, support_y=support_y)
        if self._decode_function is None:
            self._decode_function = tf.function(self.decode,
                                                reduce_retracing=True)
        psi = self._decode_function(t["support_x"], t["support_y"]).numpy()
        return [[np.asarray(p) for p in F.unflatten(tf.constant(row),
                                                     self.query_shapes)]
                for row in psi]

    def query_model(self, support_x, support_y):
        """The query learner of one task (``support_x [N, ds]``) as a new
        Keras model with the decoded weights.

        Args:
          support_x: one task's support inputs ``[N, ds]``.
          support_y: its support targets ``[N, es]``.
        """
        sx, sy = np.asarray(support_x), np.asarray(support_y)
        weights = self.query_weights(sx[None], sy[None])[0]
        model = keras.models.clone_model(self.query_learner)
        for var, value in zip(model.trainable_variables, weights):
            var.assign(value)
        for var, src in zip(model.non_trainable_variables,
                            self.query_learner.non_trainable_variables):
            var.assign(src)
        return model



def _plain(value):
    """Tuples as lists, recursively (a config that survives JSON)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
