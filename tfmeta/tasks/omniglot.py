"""Omniglot multi-shot tasks: Leap's protocol (Flennerhag et al., 2019,
section 4.1 and appendix D; Table 2).

Each of Omniglot's 50 alphabets is one 20-way classification task:

* alphabets with fewer than 20 characters are dropped (4 of them); for larger
  alphabets 20 characters are picked with a fixed seed (``PROTOCOL_SEED``);
* 10 of the remaining 46 alphabets are held out for final evaluation, chosen
  with the same fixed seed (``Omniglot.test_alphabets``): Atemayar_Qelisayer,
  Futurama, Grantha, Greek, Hebrew, Kannada, Korean, Sanskrit, Sylheti,
  ULOG. The 4 dropped ones: Blackfoot, Inuktitut and Ojibwe (Canadian
  Aboriginal Syllabics) and Tagalog. The other 36 are the pretraining
  alphabets, in a fixed seeded order (``Omniglot.train_alphabets``, starting
  Glagolitic, Braille, Arcadian, Anglo-Saxon_Futhorc, Gujarati, ...), and
  "``n`` pretraining tasks" means the first ``n`` of that order;
* per character the drawings of drawers 1-15 form the task's training
  (support) split and those of drawers 16-20 its held-out (query) split, so
  a task has 300 support and 100 query images;
* images are 28x28 grayscale ``float32`` in ``[0, 1]`` with **ink = 1** and
  background 0 (the 105x105 1-bit PNGs are inverted and downsampled with
  area (box) averaging), so the zero fill of an affine warp is background;
* augmentation (appendix D): every image gets its own random affine
  transform, drawn on the fly in ``tf.data`` - scale in [0.8, 1.2], rotation
  in [0, 360) degrees, translation in [-0.2, 0.2] of the image size per axis
  - applied to support and query images alike, with one
  ``ImageProjectiveTransformV3`` call per task batch, deterministic in
  ``(seed, element index)``. Labels are the character's index (0-19) in its
  alphabet's fixed character list.

Data: the original archives ``images_background.zip`` and
``images_evaluation.zip`` are read from ``data_dir``, else from
``$TFMETA_DATA/omniglot/`` when that variable is set, else from
``../shared/data/omniglot/`` beside the repository (the first that applies;
no fallback); nothing is ever downloaded. The PNGs are decoded once and the
28x28 ``uint8`` arrays cached as ``.npz`` in ``$TFMETA_CACHE`` (default
``~/.cache/tfmeta``), keyed on the archives' names, sizes and mtimes.
"""

import hashlib
import io
import os
import pathlib
import re
import tempfile
import time
import zipfile
import zlib

import numpy as np
import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.errors import OmniglotDataError  # noqa: F401 - re-exported
from tfmeta.tasks.pipeline import task_stream

ARCHIVES = ("images_background.zip", "images_evaluation.zip")
"""The two archive files of the original Omniglot release, read from ``<data
dir>/omniglot/``."""
IMAGE_SIZE = 28
"""Image side in pixels (28 x 28)."""
NUM_CLASSES = 20          # characters per task (appendix D)
"""Characters per task, the task's ways (appendix D: 20)."""
NUM_DRAWINGS = 20         # drawings per character in Omniglot
"""Drawings per character in Omniglot (20 drawers)."""
SUPPORT_SHOTS = 15        # drawers 1-15: task training split
"""Drawers 1-15 of each character: the task's training (support) split."""
QUERY_SHOTS = 5           # drawers 16-20: held-out split
"""Drawers 16-20: the task's held-out (query) split."""
NUM_TEST_ALPHABETS = 10
"""Alphabets held out for testing."""
NUM_VALIDATION_ALPHABETS = 10   # the last 10 pretraining alphabets
"""The last 10 pretraining alphabets, for choosing hyper-parameters."""
PROTOCOL_SEED = 2019      # fixes character choice, test alphabets, task order
"""Fixes the character choice, the test alphabets and the task order."""
SCALE_RANGE = (0.8, 1.2)
"""Augmentation: uniform scale factor range."""
ROTATION_RANGE = (0.0, 360.0)   # degrees
"""Augmentation: uniform rotation range in degrees."""
TRANSLATION_RANGE = 0.2         # fraction of the image size, each axis
"""Augmentation: uniform translation range, a fraction of the image size on
each axis."""
CACHE_VERSION = 1
"""Version of the decoded-image cache format (a new version ignores old
caches)."""

_PNG = re.compile(r"^(images_background|images_evaluation)/([^/]+)/"
                  r"character(\d+)/\d+_(\d+)\.png$")




def default_data_dirs(data_dir=None):
    """The directories searched for ``omniglot/``: ``data_dir`` if given,
    else ``$TFMETA_DATA`` if set, else ``../shared/data`` beside the repo.

    Args:
      data_dir: a directory to search (default ``None``).
    """
    if data_dir is not None:
        return [pathlib.Path(data_dir)]
    if os.environ.get("TFMETA_DATA"):   # explicit: no silent fallback
        return [pathlib.Path(os.environ["TFMETA_DATA"])]
    import tfmeta
    return [pathlib.Path(tfmeta.__file__).resolve().parents[1]
            / ".." / "shared" / "data"]


def find_archives(data_dir=None):
    """Paths of the two archives; ``FileNotFoundError`` naming every place
    looked at when they are not found together in one directory.

    Args:
      data_dir: a directory holding ``omniglot/`` (or the archives); default
        ``None``: ``$TFMETA_DATA``, else ``../shared/data`` beside the repo.
    """
    looked = []
    for base in default_data_dirs(data_dir):
        for folder in (base / "omniglot", base):
            paths = [folder / name for name in ARCHIVES]
            looked.append(str(folder))
            if all(p.is_file() for p in paths):
                return paths
    raise FileNotFoundError(
        "Omniglot archives not found: expected both "
        + " and ".join(ARCHIVES) + " in one of these directories: "
        + ", ".join(looked) + f" (TFMETA_DATA={os.environ.get('TFMETA_DATA')!r}"
        "). Pass data_dir=/--data-dir, or set TFMETA_DATA "
        "to a directory containing omniglot/ (nothing is downloaded).")


def cache_dir():
    """Where decoded images are cached: ``$TFMETA_CACHE``, default
    ``~/.cache/tfmeta``."""
    return pathlib.Path(os.environ.get("TFMETA_CACHE")
                        or pathlib.Path.home() / ".cache" / "tfmeta")


def _cache_key(paths):
    h = hashlib.sha1(f"omniglot-v{CACHE_VERSION}-{IMAGE_SIZE}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"|{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _decode_archive(path):
    """``{(alphabet, character): [20, 28, 28] uint8}`` of one archive."""
    from PIL import Image

    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                match = _PNG.match(info.filename)
                if not match:
                    continue
                _, alphabet, char, drawer = match.groups()
                with Image.open(io.BytesIO(archive.read(info))) as img:
                    small = img.convert("L").resize(
                        (IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)
                # ink (black in the PNG) -> 255, background -> 0
                array = 255 - np.asarray(small, np.uint8)
                slots = out.setdefault(
                    (alphabet, int(char)),
                    np.zeros((NUM_DRAWINGS, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
                slots[int(drawer) - 1] = array
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise OmniglotDataError(
            f"Omniglot archive {path} is unreadable (truncated or corrupt?): "
            f"{err}. Replace it with a complete copy.") from err
    if not out:
        raise OmniglotDataError(
            f"Omniglot archive {path} holds no images laid out as "
            "images_background|images_evaluation/<Alphabet>/characterNN/"
            "XXXX_YY.png.")
    return out


def decode_archives(paths):
    """Decodes both archives: ``(images [C, 20, 28, 28] uint8, alphabet of
    each character [C], character number [C])``, sorted by alphabet.

    Args:
      paths: the two archive paths (``find_archives``).
    """
    chars = {}
    for path in paths:
        chars.update(_decode_archive(path))
    keys = sorted(chars)
    images = np.stack([chars[k] for k in keys])
    return (images, np.array([k[0] for k in keys]),
            np.array([k[1] for k in keys], np.int32))


def load_raw(data_dir=None, use_cache=True, verbose=False):
    """Decoded images of all 1623 characters, through the ``.npz`` cache.

    Args:
      data_dir: a directory holding ``omniglot/`` (or the archives); default
        ``None``: ``$TFMETA_DATA``, else ``../shared/data`` beside the repo.
      use_cache: read and write the ``.npz`` cache in ``cache_dir()``
        (default ``True``; the first decode takes ~10 s).
      verbose: print what is decoded and cached (default ``False``).

    Returns:
      ``decode_archives``' ``(images, alphabets, characters)``.
    """
    paths = find_archives(data_dir)
    cache = cache_dir() / f"omniglot-{_cache_key(paths)}.npz"
    if use_cache and cache.is_file():
        try:
            with np.load(cache) as f:
                return f["images"], f["alphabets"], f["characters"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            pass  # a broken cache is rebuilt below
    start = time.perf_counter()
    images, alphabets, characters = decode_archives(paths)
    if verbose:
        print(f"decoded {images.shape[0] * NUM_DRAWINGS} Omniglot PNGs in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
    if use_cache:
        tmp = None
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".omniglot-", suffix=".npz.tmp",
                                       dir=cache.parent)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, images=images, alphabets=alphabets,
                         characters=characters)
            os.replace(tmp, cache)  # atomic: concurrent readers see whole files
        except OSError:
            # An unwritable cache only costs speed; the one file removed is
            # the temporary file this call created.
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)
    return images, alphabets, characters


class Omniglot:
    """The protocol's split of Omniglot (appendix D).

    Attributes:
      train_alphabets: the 36 pretraining alphabets, in the fixed order whose
        first ``n`` are the ``n`` pretraining tasks.
      test_alphabets: the 10 held-out alphabets.
      validation_alphabets: the last 10 of ``train_alphabets``; disjoint
        from the pretraining tasks of the table (at most the first 26), for
        choosing hyper-parameters without looking at the test alphabets
        (the paper holds out alphabets for validation the same way).
      dropped_alphabets: alphabets with fewer than 20 characters.
      characters: ``{alphabet: [20] character numbers}`` picked per alphabet.
      images: ``{alphabet: [20, 20, 28, 28] uint8}`` (class, drawer, H, W),
        ink 255.

    Args:
      images: ``[C, 20, 28, 28] uint8`` of every character (``load_raw``).
      alphabets: the alphabet of each character ``[C]``.
      characters: the character number of each ``[C]``.
      seed: the protocol's seed (default ``PROTOCOL_SEED``).
    """

    def __init__(self, images, alphabets, characters, seed=PROTOCOL_SEED):
        rng = np.random.default_rng(seed)
        names = sorted(set(alphabets.tolist()))
        self.num_characters = {a: int(np.sum(alphabets == a)) for a in names}
        kept = [a for a in names if self.num_characters[a] >= NUM_CLASSES]
        self.dropped_alphabets = [a for a in names if a not in kept]
        self.characters, self.images = {}, {}
        for a in kept:
            rows = np.flatnonzero(alphabets == a)
            pick = np.sort(rng.choice(rows, NUM_CLASSES, replace=False))
            self.characters[a] = characters[pick]
            self.images[a] = images[pick]
        order = [kept[i] for i in rng.permutation(len(kept))]
        self.test_alphabets = sorted(order[:NUM_TEST_ALPHABETS])
        self.train_alphabets = order[NUM_TEST_ALPHABETS:]
        self.validation_alphabets = self.train_alphabets[
            -NUM_VALIDATION_ALPHABETS:]

    def split(self, split, num_tasks=None):
        """Alphabets of ``"train"`` (first ``num_tasks``), ``"validation"``
        or ``"test"``."""
        names = dict(train=self.train_alphabets, test=self.test_alphabets,
                     validation=self.validation_alphabets).get(split)
        if names is None:
            raise ValueError("split must be 'train', 'validation' or 'test', "
                             f"got {split!r}.")
        if num_tasks is None:
            return list(names)
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) \
                or not 1 <= num_tasks <= len(names):
            raise ValueError(f"num_tasks must be an integer in [1, {len(names)}] "
                             f"for split {split!r}, got {num_tasks!r}.")
        return list(names[:num_tasks])

    def array(self, split, num_tasks=None):
        """``[T, 20, 20, 28, 28] uint8`` of a split's alphabets."""
        return np.stack([self.images[a] for a in self.split(split, num_tasks)])


_LOADED = {}


def load(data_dir=None, use_cache=True, verbose=False):
    """The ``Omniglot`` protocol object (decoded once per process).

    Args:
      data_dir: a directory holding ``omniglot/`` (or the archives); default
        ``None``: ``$TFMETA_DATA``, else ``../shared/data`` beside the repo.
      use_cache: read and write the ``.npz`` cache in ``cache_dir()``
        (default ``True``; the first decode takes ~10 s).
      verbose: print what is decoded and cached (default ``False``).
    """
    paths = find_archives(data_dir)
    key = (tuple(str(p.resolve()) for p in paths), _cache_key(paths))
    if key not in _LOADED or not use_cache:
        _LOADED[key] = Omniglot(*load_raw(data_dir, use_cache, verbose))
    return _LOADED[key]


# --------------------------------------------------------- augmentation
def affine_matrices(seed, n, size=IMAGE_SIZE, scale_range=SCALE_RANGE,
                    rotation_range=ROTATION_RANGE,
                    translation_range=TRANSLATION_RANGE):
    """``[n, 8]`` projective transforms (output -> input pixel coordinates)
    of random affine maps about the image centre: scale ``s``, rotation
    ``r`` (degrees), translation ``t`` (fraction of ``size``), i.e.
    ``out = c + s R(r) (in - c) + t size``.

    Args:
      seed: a stateless ``[2]`` int seed.
      n: number of transforms.
      size: image side in pixels (default ``IMAGE_SIZE``).
      scale_range: ``(low, high)`` of ``s`` (default ``SCALE_RANGE``).
      rotation_range: ``(low, high)`` of ``r`` in degrees (default
        ``ROTATION_RANGE``).
      translation_range: ``t ~ U(-range, range)`` per axis, a fraction of
        ``size`` (default ``TRANSLATION_RANGE``).
    """
    keys = tf.random.experimental.stateless_split(seed, 3)
    scale = tf.random.stateless_uniform([n], keys[0], *scale_range)
    angle = tf.random.stateless_uniform([n], keys[1], *rotation_range)
    shift = tf.random.stateless_uniform(
        [n, 2], keys[2], -translation_range, translation_range) * size
    angle = angle * (np.pi / 180.0)
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    centre = (size - 1) / 2.0
    # inverse map: in = A (out - c - t) + c with A = R(-r) / s
    ox, oy = centre + shift[:, 0], centre + shift[:, 1]
    a0, a1 = cos, sin
    b0, b1 = -sin, cos
    a2 = centre - a0 * ox - a1 * oy
    b2 = centre - b0 * ox - b1 * oy
    zeros = tf.zeros_like(cos)
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment(images, seed, **ranges):
    """Random affine transform of each image of ``[N, H, W, C]`` float
    ``images`` (bilinear, zero fill), all in one
    ``ImageProjectiveTransformV3`` call.

    Args:
      images: ``[N, H, W, C]`` float images.
      seed: a stateless ``[2]`` int seed.
      **ranges: ``scale_range``, ``rotation_range``, ``translation_range``
        as in ``affine_matrices``.
    """
    images = tf.convert_to_tensor(images)
    n, size = tf.shape(images)[0], images.shape[1]
    transforms = affine_matrices(seed, n, size=size, **ranges)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms,
        output_shape=tf.shape(images)[1:3], fill_value=0.0,
        interpolation="BILINEAR", fill_mode="CONSTANT")


# ------------------------------------------------------------- task batches
def _check_shots(ways, support_shots, query_shots, support_copies=1):
    positive_int("support_copies", support_copies)
    if not (isinstance(ways, int) and 1 <= ways <= NUM_CLASSES):
        raise ValueError(f"ways must be an integer in [1, {NUM_CLASSES}], "
                         f"got {ways!r}.")
    if not (isinstance(support_shots, int) and isinstance(query_shots, int)
            and support_shots >= 1 and query_shots >= 1
            and support_shots + query_shots <= NUM_DRAWINGS):
        raise ValueError(
            "support_shots and query_shots must be positive with a sum of at "
            f"most {NUM_DRAWINGS}, got {support_shots!r} and {query_shots!r}.")


def _make_batch(pool, task_ids, key, ways, support_shots, query_shots,
                augment_ranges, support_batch=None, support_copies=1):
    """Task batch of alphabets ``task_ids`` from ``pool [T, 20, 20, 28, 28]``."""
    x = tf.gather(pool, task_ids)[:, :ways]                     # [B, W, 20, H, W]
    b = tf.shape(task_ids)[0]
    x = tf.cast(x, tf.float32) / 255.0
    support = x[:, :, :support_shots]
    query = x[:, :, NUM_DRAWINGS - query_shots:]               # last drawers

    def flat(t, shots):
        return tf.reshape(t, [-1, ways * shots, IMAGE_SIZE, IMAGE_SIZE, 1])

    support, query = flat(support, support_shots), flat(query, query_shots)
    support_y = tf.tile(tf.repeat(tf.range(ways, dtype=tf.int32),
                                  support_shots)[None], [b, support_copies])
    support = tf.tile(support, [1, support_copies, 1, 1, 1])
    keys = tf.random.experimental.stateless_split(key, 2)
    n_s = ways * support_shots * support_copies
    if support_batch is not None:   # a random minibatch of each support split
        order = tf.argsort(tf.random.stateless_uniform([b, n_s], keys[1]), -1)
        pick = order[:, :support_batch]
        support = tf.gather(support, pick, batch_dims=1)
        support_y = tf.gather(support_y, pick, batch_dims=1)
        n_s = support_batch
    if augment_ranges is not None:
        both = tf.concat([support, query], axis=1)
        both = tf.reshape(both, [-1, IMAGE_SIZE, IMAGE_SIZE, 1])
        both = augment(both, keys[0], **augment_ranges)
        both = tf.reshape(
            both, [b, n_s + ways * query_shots, IMAGE_SIZE, IMAGE_SIZE, 1])
        support, query = both[:, :n_s], both[:, n_s:]
    query_y = tf.tile(tf.repeat(tf.range(ways, dtype=tf.int32),
                                query_shots)[None], [b, 1])
    return {"support_x": support, "support_y": support_y,
            "query_x": query, "query_y": query_y,
            "task_id": tf.cast(task_ids, tf.int32)}


def _ranges(augment_flag, augment_ranges):
    if not augment_flag:
        return None
    return dict(augment_ranges or {})


def dataset(split="train", num_tasks=None, meta_batch_size=20, seed=0,
            augment=True, ways=NUM_CLASSES, support_shots=SUPPORT_SHOTS,
            query_shots=QUERY_SHOTS, data_dir=None, augment_ranges=None,
            data=None, support_batch=None, support_copies=1, start=0):
    """An endless ``tf.data.Dataset`` of task batches (dicts), beginning at
    element ``start`` (to resume a run where it stopped).

    ``support_x [B, ways*support_shots, 28, 28, 1]`` (300 for 20 x 15),
    ``support_y [B, 300]`` int32 labels, ``query_x [B, ways*query_shots, 28,
    28, 1]``, ``query_y``, and ``task_id [B]``: the alphabet's index among the
    ``num_tasks`` pretraining tasks (for ``FineTune(num_heads=num_tasks)``).
    Each task of a batch is an alphabet drawn uniformly (with replacement)
    from the first ``num_tasks`` of the split; element ``i`` depends only on
    ``(seed, i)``. ``support_copies=c`` repeats the support split ``c``
    times, each copy with its own augmentation, so that the inner loop's
    minibatches come close to the paper's on-the-fly augmentation (the
    support tensor is fixed while a task trains). ``support_batch=k`` keeps a random ``k`` of each task's
    support images (e.g. 20 for FineTune's pretraining minibatches, Table 3);
    ``augment_ranges`` overrides ``scale_range``,
    ``rotation_range`` or ``translation_range`` of the augmentation.

    Args:
      split: ``"train"`` (default), ``"validation"`` or ``"test"``.
      num_tasks: use the first ``num_tasks`` alphabets of the split
        (default ``None``: all).
      meta_batch_size: tasks per element, ``B`` (default 20).
      seed: int seed of the task stream and augmentation (default 0).
      augment: random affine augmentation per image (default ``True``).
      ways: characters per task (default 20).
      support_shots: support drawings per character (default 15).
      query_shots: query drawings per character (default 5).
      data_dir: a directory holding ``omniglot/`` (or the archives); default
        ``None``: ``$TFMETA_DATA``, else ``../shared/data`` beside the repo.
      augment_ranges: a dict overriding ``scale_range``,
        ``rotation_range`` or ``translation_range`` (default ``None``).
      data: an ``Omniglot`` object to use instead of ``load(data_dir)``
        (default ``None``).
      support_batch: keep a random ``k`` of each task's support images
        (default ``None``: all).
      support_copies: independently augmented copies of the support split
        (default 1).
      start: index of the first element (default 0).
    """
    _check_shots(ways, support_shots, query_shots, support_copies)
    if support_batch is not None and not (
            isinstance(support_batch, int)
            and 1 <= support_batch <= ways * support_shots * support_copies):
        raise ValueError(f"support_batch must be an integer in [1, "
                         f"{ways * support_shots * support_copies}] or None, "
                         f"got {support_batch!r}.")
    positive_int("meta_batch_size", meta_batch_size)
    data = data or load(data_dir)
    pool = tf.constant(data.array(split, num_tasks))
    n = pool.shape[0]
    ranges = _ranges(augment, augment_ranges)

    def element(i):
        key = tf.random.experimental.stateless_fold_in(
            tf.constant([seed, 1], tf.int64), i)
        keys = tf.random.experimental.stateless_split(key, 2)
        ids = tf.random.stateless_uniform(
            [meta_batch_size], keys[0], 0, n, dtype=tf.int32)
        return _make_batch(pool, ids, keys[1], ways, support_shots,
                           query_shots, ranges, support_batch, support_copies)

    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")
    return task_stream(element, start)


def tasks(split="test", num_tasks=None, seed=0, augment=True,
          ways=NUM_CLASSES, support_shots=SUPPORT_SHOTS,
          query_shots=QUERY_SHOTS, data_dir=None, augment_ranges=None,
          data=None, support_copies=1):
    """One fixed batch with every alphabet of ``split`` (the first
    ``num_tasks``) once, in order: the held-out evaluation tasks. NumPy
    arrays shaped as in ``dataset``; augmented with seed ``seed``.

    Args:
      split: ``"test"`` (default), ``"validation"`` or ``"train"``.
      num_tasks: the first ``num_tasks`` alphabets (default ``None``: all).
      seed: int seed of the augmentation (default 0).
      augment: random affine augmentation per image (default ``True``).
      ways: characters per task (default 20).
      support_shots: support drawings per character (default 15).
      query_shots: query drawings per character (default 5).
      data_dir: a directory holding ``omniglot/`` (or the archives); default
        ``None``: ``$TFMETA_DATA``, else ``../shared/data`` beside the repo.
      augment_ranges: a dict overriding ``scale_range``,
        ``rotation_range`` or ``translation_range`` (default ``None``).
      data: an ``Omniglot`` object to use instead of ``load(data_dir)``
        (default ``None``).
      support_copies: independently augmented copies of the support split
        (default 1).
    """
    _check_shots(ways, support_shots, query_shots, support_copies)
    data = data or load(data_dir)
    pool = tf.constant(data.array(split, num_tasks))
    ids = tf.range(pool.shape[0], dtype=tf.int32)
    key = tf.constant([seed, 2], tf.int64)
    batch = _make_batch(pool, ids, key, ways, support_shots, query_shots,
                        _ranges(augment, augment_ranges),
                        support_copies=support_copies)
    return {k: v.numpy() for k, v in batch.items()}


def leap_convnet(num_classes=NUM_CLASSES, seed=None, image_size=IMAGE_SIZE,
                 filters=64, blocks=4):
    """The Leap/MAML/Matching-nets Omniglot network (appendix D): 4 x [3x3
    conv, 64 filters, same padding, batch norm, ReLU, 2x2 max-pool], then a
    linear layer giving logits. Uses ``tfmeta.layers.BatchNormalization``
    (momentum 0, exact second derivatives for MAML).

    Args:
      num_classes: logits (default 20).
      seed: Glorot-uniform initializers seeded ``seed + i`` (default
        ``None``: unseeded).
      image_size: input side in pixels (default 28).
      filters: filters per conv (default 64).
      blocks: conv blocks (default 4).
    """
    import keras

    from tfmeta.layers import BatchNormalization

    init = lambda i: keras.initializers.GlorotUniform(  # noqa: E731
        None if seed is None else seed + i)
    layers = [keras.Input((image_size, image_size, 1))]
    for i in range(blocks):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same",
                                kernel_initializer=init(i)),
            BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
        ]
    layers += [keras.layers.Flatten(),
               keras.layers.Dense(num_classes, kernel_initializer=init(blocks))]
    return keras.Sequential(layers, name="leap_convnet")
