"""N-way K-shot episodes over any labelled source, as ``tf.data`` task
batches (Vinyals et al., 2016; MAML, Finn et al., 2017, section 5.2;
Reptile, Nichol et al., 2018, section 5.1).

An episode draws ``N`` distinct classes, then ``K + Q`` distinct examples of
each: ``K`` form the support split, ``Q`` the query split. Labels are
``0 .. N-1`` within the episode. Episodes come out as the task batches every
meta-learner takes: ``support_x [B, N*K, ...]``, ``support_y [B, N*K]``
(int32), ``query_x [B, N*Q, ...]``, ``query_y [B, N*Q]``, class-major (class
0's examples first).

Sources (``ClassPool``): in-memory arrays (``from_arrays``), a
``tf.data.Dataset`` of ``(x, y)`` (``from_dataset``), a tensorflow-datasets
builder prepared in a local ``data_dir`` (``from_tfds``; never downloads),
an image folder with one sub-folder per class (``from_image_folder``), or a
dense ``[C, E, ...]`` array of ``E`` examples per class (``ClassPool``
itself, e.g. Omniglot). Within a class, examples are kept in a canonical
order (by content), so the same data gives the same episodes whichever
source it comes from.

Sampling is stateless: episode batch ``i`` depends only on ``(seed, i)``.
Class splits (``split_classes``) restrict an episode's classes;
``rotations`` adds rotated copies of every class as new classes (Omniglot's
protocol); ``permute_labels`` assigns the episode's labels in random order
(otherwise in class order); ``augment`` is a hook ``fn(images, seed) ->
images`` applied per episode.

Evaluation (``evaluate``): the adapted learner's query accuracy per episode,
with batch normalization in one of three modes (Reptile, section 5.1):
``"non-transductive"`` (default: statistics of the whole support split plus
the one query example being classified), ``"transductive"`` (statistics of
the whole query split at once, as MAML is evaluated) or ``"inference"``
(the adapted moving statistics, what ``MetaLearner.evaluate`` uses).
"""

import hashlib
import math
import pathlib

import numpy as np
import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.tasks.pipeline import task_stream

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
"""Image files ``from_image_folder`` reads (case-insensitive)."""
EVAL_MODES = ("non-transductive", "transductive", "inference")
"""Where test-time batch statistics come from (``query_predictions``)."""


class FewShotDataError(ValueError):
    """A labelled source cannot give the episodes asked of it."""


# ------------------------------------------------------------------ sources
class ClassPool:
    """Examples grouped by class, the input of the episode sampler.

    Args:
      examples: ``[C, E, ...]`` (every class has ``E`` examples), or a flat
        ``[M, ...]`` array sorted by class together with ``counts``.
      counts: ``[C]`` examples per class when ``examples`` is flat.
      class_names: one name per class (default ``0 .. C-1``).
      scale: integer examples are cast to float32 and multiplied by
        ``scale`` when episodes are made (e.g. ``1/255`` for uint8
        images); floating-point examples are passed through unchanged.
    """

    def __init__(self, examples, counts=None, class_names=None, scale=1.0):
        examples = np.asarray(examples)
        if counts is None:
            if examples.ndim < 2:
                raise FewShotDataError(
                    "ClassPool needs examples [C, E, ...] or a flat array "
                    f"with counts=; got shape {examples.shape}.")
            counts = np.full([examples.shape[0]], examples.shape[1], np.int64)
            examples = examples.reshape((-1,) + examples.shape[2:])
        counts = np.asarray(counts, np.int64)
        if counts.ndim != 1 or counts.sum() != examples.shape[0] \
                or (counts < 1).any():
            raise FewShotDataError(
                f"counts {counts.tolist()[:10]}... must be positive and sum to "
                f"the {examples.shape[0]} examples.")
        if len(counts) == 0:
            raise FewShotDataError("the source holds no classes.")
        self.examples = examples
        self.counts = counts
        self.offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self.class_names = (list(class_names) if class_names is not None
                            else list(range(len(counts))))
        if len(self.class_names) != len(counts):
            raise FewShotDataError(
                f"{len(self.class_names)} class names for {len(counts)} classes.")
        self.scale = float(scale)

    @property
    def num_classes(self):
        return len(self.counts)

    @property
    def example_shape(self):
        return self.examples.shape[1:]

    def class_examples(self, c):
        """The examples of class index ``c`` (in the canonical order)."""
        start = self.offsets[c]
        return self.examples[start:start + self.counts[c]]


def _content_order(x):
    """Indices sorting the examples ``x [n, ...]`` by a hash of their bytes
    (stable for duplicates): an order independent of how a source stores
    its examples."""
    keys = [hashlib.sha1(np.ascontiguousarray(e).tobytes()).digest() for e in x]
    return np.array(sorted(range(len(x)), key=lambda i: keys[i]), np.int64)


def from_arrays(x, y, scale=1.0, class_names=None):
    """A ``ClassPool`` from examples ``x [M, ...]`` and integer labels
    ``y [M]``; classes are the distinct label values, in increasing order.

    Args:
      x: examples ``[M, ...]``.
      y: integer labels ``[M]``.
      scale: integer examples are cast to float32 and multiplied by this
        when episodes are made (default 1.0).
      class_names: one name per class (default ``None``: the label values).
    """
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1:
        raise FewShotDataError(
            f"labels must be a vector [M] of integers, got shape {y.shape}.")
    if not np.issubdtype(y.dtype, np.integer):
        raise FewShotDataError(
            f"labels must be integers (class ids), got dtype {y.dtype}"
            + (f" (e.g. {y[0]!r})" if len(y) else "")
            + "; map class names or one-hot rows to integer ids first.")
    if x.shape[:1] != y.shape:
        raise FewShotDataError(
            f"{x.shape[0] if x.ndim else 0} examples but {len(y)} labels.")
    if len(y) == 0:
        raise FewShotDataError("the source holds no examples.")
    labels, counts = np.unique(y, return_counts=True)
    order = np.concatenate([
        np.flatnonzero(y == c)[_content_order(x[y == c])] for c in labels])
    return ClassPool(x[order], counts, class_names if class_names is not None
                     else labels.tolist(), scale)


def from_dataset(dataset, scale=1.0, class_names=None):
    """A ``ClassPool`` from a finite ``tf.data.Dataset`` of single examples
    ``(x, y)`` (or ``{"image": x, "label": y}``), read once into memory.

    Args:
      dataset: the finite ``tf.data.Dataset``.
      scale: integer examples are cast to float32 and multiplied by this
        when episodes are made (default 1.0).
      class_names: one name per class (default ``None``: the label values).
    """
    xs, ys = [], []
    for element in dataset.as_numpy_iterator():
        if isinstance(element, dict):
            if not {"image", "label"} <= set(element):
                raise FewShotDataError(
                    "dataset elements must be (x, y) pairs or dicts with "
                    f"'image' and 'label'; got keys {sorted(element)}.")
            element = (element["image"], element["label"])
        if not isinstance(element, tuple) or len(element) != 2:
            raise FewShotDataError(
                "dataset elements must be (x, y) pairs; got "
                f"{type(element).__name__}.")
        xs.append(element[0])
        ys.append(element[1])
    if not xs:
        raise FewShotDataError("the dataset holds no examples.")
    y = np.asarray(ys)
    if y.ndim != 1:
        raise FewShotDataError(
            f"each label must be one integer; got labels of shape {y.shape[1:]} "
            "(batched or one-hot? unbatch the dataset / use class ids).")
    return from_arrays(np.stack(xs), y, scale, class_names)


def from_tfds(name, data_dir, split="train", scale=1 / 255, image_key="image",
              label_key="label"):
    """A ``ClassPool`` from the tensorflow-datasets builder ``name`` whose
    data is already prepared in ``data_dir``; nothing is ever downloaded.
    ``FewShotDataError`` when ``data_dir`` does not hold it.

    Args:
      name: the builder's name, e.g. ``"omniglot"``.
      data_dir: the directory where it was prepared (required).
      split: the split to read (default ``"train"``).
      scale: integer examples are cast to float32 and multiplied by this
        when episodes are made (default ``1/255``).
      image_key: the feature holding the example (default ``"image"``).
      label_key: the feature holding the label (default ``"label"``).
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "from_tfds needs tensorflow-datasets: pip install 'tfmeta[data]'."
        ) from err
    if data_dir is None:
        raise FewShotDataError(
            "from_tfds needs data_dir: the directory where the data set "
            "was prepared (nothing is downloaded).")
    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
    except Exception as err:  # noqa: BLE001 - tfds raises many kinds
        raise FewShotDataError(
            f"tensorflow-datasets has no data set {name!r} in {data_dir} "
            f"({type(err).__name__}: {str(err).splitlines()[0]}). Prepare it "
            "there first (tfds build / download_and_prepare); tfmeta never "
            "downloads.") from err
    if not builder.is_prepared():
        raise FewShotDataError(
            f"tensorflow-datasets data set {name!r} is not prepared in "
            f"{data_dir} (looked for {builder.data_dir}). Prepare it there "
            "first (tfds build / download_and_prepare); tfmeta never "
            "downloads.")
    ds = builder.as_dataset(split=split, shuffle_files=False)
    ds = ds.map(lambda e: (e[image_key], e[label_key]))
    names = None
    feature = builder.info.features[label_key]
    if hasattr(feature, "names"):
        names = list(feature.names)
    pool = from_dataset(ds, scale)
    if names is not None:
        pool.class_names = [names[int(i)] for i in pool.class_names]
    return pool


def from_image_folder(path, image_size=None, channels=None, scale=1 / 255):
    """A ``ClassPool`` from ``path/<class>/<image>`` (one sub-folder per
    class, classes in sorted name order; PNG, JPEG, BMP or GIF). Images are
    resized to ``image_size`` (int or ``(h, w)``) when given (area
    averaging) and must otherwise share one size; ``channels`` (1 or 3)
    converts them, else their own channel count is kept.

    Args:
      path: the folder.
      image_size: resize to this side (int) or ``(h, w)`` (default
        ``None``: keep the size).
      channels: 1 or 3 (default ``None``: the images' own).
      scale: integer examples are cast to float32 and multiplied by this
        when episodes are made (default ``1/255``).
    """
    from PIL import Image

    root = pathlib.Path(path)
    if not root.is_dir():
        raise FewShotDataError(f"image folder {root} does not exist.")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise FewShotDataError(
            f"image folder {root} has no class sub-folders (expected "
            f"{root}/<class>/<image>).")
    xs, ys, names = [], [], []
    for folder in folders:
        files = sorted(p for p in folder.iterdir()
                       if p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise FewShotDataError(
                f"class folder {folder} holds no images "
                f"({', '.join(IMAGE_EXTENSIONS)}).")
        for f in files:
            try:
                with Image.open(f) as img:
                    if channels == 1 or (channels is None and img.mode in
                                         ("1", "L", "I", "I;16", "F")):
                        img = img.convert("L")
                    else:
                        img = img.convert("RGB")
                    if image_size is not None:
                        size = ((image_size, image_size)
                                if isinstance(image_size, int) else image_size)
                        img = img.resize((size[1], size[0]),
                                         Image.Resampling.BOX)
                    array = np.asarray(img, np.uint8)
            except OSError as err:
                raise FewShotDataError(
                    f"image {f} is unreadable: {err}.") from err
            if array.ndim == 2:
                array = array[..., None]
            if xs and array.shape != xs[0].shape:
                raise FewShotDataError(
                    f"image {f} has shape {array.shape} but {xs[0].shape} was "
                    "seen before; pass image_size= to resize them all.")
            xs.append(array)
            ys.append(len(names))
        names.append(folder.name)
    return from_arrays(np.stack(xs), np.array(ys), scale, class_names=names)


def split_classes(num_classes, test, validation=0, seed=0):
    """Disjoint class index arrays ``{"train", "validation", "test"}``:
    a permutation of ``range(num_classes)`` with seed ``seed`` (``None``:
    no shuffling) whose last ``test`` are the test classes and the
    ``validation`` before them the validation classes.

    Args:
      num_classes: number of classes ``C``.
      test: test classes (the last ``test`` of the permutation).
      validation: validation classes (default 0).
      seed: permutation seed (default 0; ``None``: no shuffling).
    """
    num_classes = positive_int("num_classes", num_classes)
    for name, value in (("test", test), ("validation", validation)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got "
                             f"{value!r}.")
    if test + validation >= num_classes:
        raise ValueError(
            f"test ({test}) + validation ({validation}) classes leave none of "
            f"the {num_classes} for training.")
    order = (np.arange(num_classes) if seed is None
             else np.random.default_rng(seed).permutation(num_classes))
    n_train = num_classes - test - validation
    return {"train": np.sort(order[:n_train]),
            "validation": np.sort(order[n_train:n_train + validation]),
            "test": np.sort(order[n_train + validation:])}


# ------------------------------------------------------------------ episodes
def _check_episode_args(pool, classes, ways, shots, query_shots, rotations):
    ways = positive_int("ways", ways)
    shots = positive_int("shots", shots)
    query_shots = positive_int("query_shots", query_shots)
    classes = (np.arange(pool.num_classes) if classes is None
               else np.asarray(classes))
    if classes.ndim != 1 or len(classes) == 0 \
            or not np.issubdtype(classes.dtype, np.integer):
        raise ValueError("classes must be a non-empty vector of class "
                         f"indices, got {classes!r}.")
    if len(np.unique(classes)) != len(classes) or classes.min() < 0 \
            or classes.max() >= pool.num_classes:
        raise ValueError(f"classes must be distinct indices in [0, "
                         f"{pool.num_classes}), got {classes.tolist()[:10]}...")
    rotations = tuple(rotations or (0,))
    if any(r % 90 for r in rotations) or len(set(r % 360 for r in rotations)) \
            != len(rotations):
        raise ValueError("rotations must be distinct multiples of 90 degrees, "
                         f"got {rotations!r}.")
    if rotations != (0,):
        shape = pool.example_shape
        if len(shape) != 3 or shape[0] != shape[1]:
            raise ValueError("rotations need square images [H, H, C]; the "
                             f"examples have shape {shape}.")
    available = len(classes) * len(rotations)
    if ways > available:
        raise FewShotDataError(
            f"{ways}-way episodes need {ways} classes but the split has only "
            f"{available}" + (f" ({len(classes)} x {len(rotations)} rotations)"
                              if len(rotations) > 1 else "") + ".")
    counts = pool.counts[classes]
    if shots + query_shots > counts.min():
        small = classes[counts < shots + query_shots]
        raise FewShotDataError(
            f"shots + query_shots = {shots} + {query_shots} examples per class "
            f"but {len(small)} class(es) have fewer (class "
            f"{pool.class_names[small[0]]!r} has {pool.counts[small[0]]}).")
    return ways, shots, query_shots, classes, rotations


class _Sampler:
    """Draws episode batches in TensorFlow; see ``episodes``."""

    def __init__(self, pool, classes, ways, shots, query_shots, rotations,
                 permute_labels, augment, augment_query):
        (self.ways, self.shots, self.query_shots, classes,
         rotations) = _check_episode_args(pool, classes, ways, shots,
                                          query_shots, rotations)
        self.pool = tf.constant(pool.examples)
        self.scale = pool.scale
        self.counts = tf.constant(pool.counts[classes], tf.int32)
        self.offsets = tf.constant(pool.offsets[classes], tf.int32)
        self.num_base = len(classes)
        self.max_count = int(pool.counts[classes].max())
        self.quarter_turns = tf.constant([(r // 90) % 4 for r in rotations],
                                         tf.int32)
        self.rotate = len(rotations) > 1 or rotations[0] % 360 != 0
        self.num_virtual = len(classes) * len(rotations)
        self.permute_labels = bool(permute_labels)
        self.augment, self.augment_query = augment, bool(augment_query)

    def episode(self, key):
        n, k, q = self.ways, self.shots, self.query_shots
        keys = tf.random.experimental.stateless_split(key, 4)
        # N distinct (class, rotation) pairs: the first N of a permutation
        order = tf.argsort(tf.random.stateless_uniform([self.num_virtual],
                                                       keys[0]))
        chosen = order[:n]
        if not self.permute_labels:          # labels follow class order
            chosen = tf.sort(chosen)
        base = chosen % self.num_base
        turns = tf.gather(self.quarter_turns, chosen // self.num_base)
        counts = tf.gather(self.counts, base)
        # K + Q distinct examples per class: first of a random order of
        # the class's examples (slots past its count sort last)
        u = tf.random.stateless_uniform([n, self.max_count], keys[1])
        u = tf.where(tf.range(self.max_count)[None] < counts[:, None], u, 2.0)
        pick = tf.argsort(u, axis=1)[:, :k + q]
        index = tf.gather(self.offsets, base)[:, None] + pick
        x = tf.gather(self.pool, index)                  # [N, K+Q, ...]
        if x.dtype.is_integer or x.dtype == tf.bool:
            x = tf.cast(x, tf.float32) * self.scale
        if self.rotate:
            x = self._rotate(x, turns)
        support = tf.reshape(x[:, :k], [n * k] + x.shape[2:].as_list())
        query = tf.reshape(x[:, k:], [n * q] + x.shape[2:].as_list())
        if self.augment is not None:
            support = self.augment(support, keys[2])
            if self.augment_query:
                query = self.augment(query, keys[3])
        labels = tf.range(n, dtype=tf.int32)
        return {"support_x": support, "support_y": tf.repeat(labels, k),
                "query_x": query, "query_y": tf.repeat(labels, q)}

    @staticmethod
    def _rotate(x, turns):
        """Rotates class ``i`` of ``x [N, S, H, H, C]`` by ``turns[i]``
        quarter turns (counter-clockwise)."""
        shape = tf.shape(x)
        flat = tf.reshape(x, tf.concat([[-1], shape[2:]], 0))
        all_turns = tf.stack([tf.image.rot90(flat, t) for t in range(4)])
        all_turns = tf.reshape(all_turns, tf.concat([[4], shape], 0))
        return tf.gather_nd(
            tf.transpose(all_turns, [1, 0, 2, 3, 4, 5]),
            tf.stack([tf.range(tf.shape(turns)[0]), turns], axis=1))

    def batch(self, index, seed, meta_batch_size):
        key = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, 7], tf.int64), index)
        keys = tf.random.experimental.stateless_split(key, meta_batch_size)
        return tf.map_fn(self.episode, keys, fn_output_signature={
            "support_x": tf.TensorSpec(None, tf.float32 if self._float_out()
                                       else self.pool.dtype),
            "support_y": tf.int32,
            "query_x": tf.TensorSpec(None, tf.float32 if self._float_out()
                                     else self.pool.dtype),
            "query_y": tf.int32})

    def _float_out(self):
        return self.pool.dtype.is_integer or self.pool.dtype == tf.bool


def episodes(pool, ways, shots, query_shots=1, meta_batch_size=1,
             classes=None, rotations=None, permute_labels=True, augment=None,
             augment_query=True, seed=0, start=0, count=None):
    """A ``tf.data.Dataset`` of ``N``-way ``K``-shot episode batches.

    Args:
      pool: a ``ClassPool`` (see ``from_arrays`` and friends).
      ways: ``N``, classes per episode.
      shots: ``K``, support examples per class.
      query_shots: ``Q``, query examples per class (default 1).
      meta_batch_size: episodes per element (the leading axis ``B``).
      classes: class indices to draw from (a split of ``split_classes``);
        default all.
      rotations: e.g. ``(0, 90, 180, 270)``: each class rotated by each
        angle is a class of its own (Omniglot's meta-training protocol;
        square images only).
      permute_labels: labels ``0 .. N-1`` in random order over the drawn
        classes (default); ``False``: in increasing class order.
      augment: ``fn(images, seed) -> images`` on the ``[N*K, ...]`` support
        (and, with ``augment_query``, ``[N*Q, ...]`` query) images of each
        episode; ``seed`` is a stateless ``[2]`` int64 seed. Default
        ``None``: no augmentation.
      augment_query: apply ``augment`` to the query images too (default
        ``True``).
      seed: int; element ``i`` depends only on ``(seed, start + i)``
        (default 0).
      start: index of the first element (default 0; a resumed run passes
        the number of elements already used).
      count: number of elements (default endless).

    Elements: dicts ``support_x [B, N*K, ...]`` (float32 for integer
    sources, scaled by the pool's ``scale``), ``support_y [B, N*K]`` int32,
    ``query_x [B, N*Q, ...]``, ``query_y [B, N*Q]``.
    """
    meta_batch_size = positive_int("meta_batch_size", meta_batch_size)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")
    count = positive_int("count", count, allow_none=True)
    if augment is not None and not callable(augment):
        raise TypeError(f"augment must be callable fn(images, seed), got "
                        f"{type(augment).__name__}.")
    sampler = _Sampler(pool, classes, ways, shots, query_shots, rotations,
                       permute_labels, augment, augment_query)
    shape = list(pool.example_shape)
    n = sampler.ways

    def element(i):
        out = sampler.batch(i, seed, meta_batch_size)
        for split, per in (("support", sampler.shots),
                           ("query", sampler.query_shots)):
            out[f"{split}_x"] = tf.ensure_shape(
                out[f"{split}_x"], [meta_batch_size, n * per] + shape)
            out[f"{split}_y"] = tf.ensure_shape(
                out[f"{split}_y"], [meta_batch_size, n * per])
        return out

    return task_stream(element, start, count)


# ---------------------------------------------------------------- evaluation
def _predict(learner, params, nontrainable, support_x, query_x, mode):
    """Query outputs of ``learner`` at weights ``(params, nontrainable)``
    with batch normalization in ``mode`` (see ``query_predictions``)."""
    def call(x, training):
        return learner.stateless_call(params, nontrainable, x,
                                      training=training)[0]

    if mode == "transductive":
        return call(query_x, True)
    if mode == "inference":
        return call(query_x, False)
    # non-transductive: the support split plus one query example at a time
    return tf.map_fn(
        lambda q: call(tf.concat([support_x, q[None]], 0), True)[-1],
        query_x, fn_output_signature=learner.compute_dtype,
        parallel_iterations=4)


def _check_mode(mode):
    if mode not in EVAL_MODES:
        raise ValueError(f"unknown evaluation mode {mode!r}; choose from "
                         f"{list(EVAL_MODES)}.")


class _Predictor:
    """``query_predictions`` for models of one architecture, traced once
    per mode and shape: the model's weights are arguments."""

    def __init__(self, template):
        self.template = template
        self.fn = tf.function(
            lambda p, nt, sx, qx, m: _predict(template, p, nt, sx, qx, m),
            reduce_retracing=True)

    def __call__(self, model, support_x, query_x, mode):
        _check_mode(mode)
        params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
        nontrainable = [tf.convert_to_tensor(v)
                        for v in model.non_trainable_variables]
        return self.fn(params, nontrainable, tf.convert_to_tensor(support_x),
                       tf.convert_to_tensor(query_x), mode)


def query_predictions(model, support_x, query_x, mode="non-transductive"):
    """Outputs of an adapted learner (``meta.adapt(...)``) on a task's query
    examples, with batch normalization (Reptile, section 5.1) in ``mode``:

    * ``"non-transductive"`` (default): for each query example, training-mode
      batch statistics of the support split plus that one example; no
      information passes between query examples;
    * ``"transductive"``: training-mode statistics of the whole query split;
    * ``"inference"``: the model's moving statistics (after ``meta.adapt``
      with ``tfmeta.layers.BatchNormalization``: the last support
      minibatch's), as ``MetaLearner.evaluate`` predicts.

    The model's variables are not changed. Without batch normalization the
    three modes give the same outputs.

    Args:
      model: the adapted Keras model.
      support_x: the task's support inputs ``[N*K, ...]``.
      query_x: its query inputs ``[N*Q, ...]``.
      mode: one of ``EVAL_MODES`` (default ``"non-transductive"``).
    """
    return _Predictor(model)(model, support_x, query_x, mode)


def evaluate(meta, tasks, mode="non-transductive", steps=None, modes=None):
    """Per-episode query accuracy of a compiled meta-learner.

    Each episode of ``tasks`` (a task batch, or an iterable / dataset of
    them) is adapted with ``meta.adapt`` on its support split (``steps``,
    default the meta-learner's ``eval_steps``); its query examples are then
    classified by ``query_predictions`` in ``mode`` (default
    ``"non-transductive"``, Reptile's main setting). ``modes`` (a list)
    evaluates several modes on the same adaptations.

    Returns ``{"accuracy": [E] per episode, "mean", "ci95"}`` (with
    ``modes``: a dict of those by mode); ``ci95`` is the half-width of the
    normal 95 % interval of the mean over episodes, 1.96 std / sqrt(E).

    Args:
      meta: a compiled meta-learner.
      tasks: a task batch, or an iterable / dataset of them.
      mode: one of ``EVAL_MODES`` (default ``"non-transductive"``).
      steps: adaptation steps (default ``None``: ``meta.eval_steps``).
      modes: a list of modes to evaluate on the same adaptations (default
        ``None``: ``[mode]``).
    """
    wanted = list(modes) if modes is not None else [mode]
    for m in wanted:
        _check_mode(m)
    if isinstance(tasks, dict):
        tasks = [tasks]
    predict = _Predictor(meta.learner)
    accuracy = {m: [] for m in wanted}
    for batch in tasks:
        batch = {k: np.asarray(v) for k, v in batch.items()}
        for b in range(batch["support_x"].shape[0]):
            adapted = meta.adapt(batch["support_x"][b], batch["support_y"][b],
                                 steps=steps)
            for m in wanted:
                out = predict(adapted, batch["support_x"][b],
                              batch["query_x"][b], m).numpy()
                hits = np.argmax(out, -1) == batch["query_y"][b]
                accuracy[m].append(float(hits.mean()))
    if not accuracy[wanted[0]]:
        raise ValueError("evaluate got no episodes.")
    out = {}
    for m in wanted:
        acc = np.array(accuracy[m])
        ci = (1.96 * acc.std(ddof=1) / math.sqrt(len(acc))
              if len(acc) > 1 else float("nan"))
        out[m] = {"accuracy": acc, "mean": float(acc.mean()), "ci95": ci}
    return out if modes is not None else out[wanted[0]]
