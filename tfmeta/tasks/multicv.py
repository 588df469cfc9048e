"""Multi-CV data sets (Leap section 4.2, appendix G): whole computer-vision
data sets as tasks.

Every data set becomes a ``DataSet``: ``float32`` images of 32x32x3 with the
normalization of HAT (Serra et al., 2018; Leap appendix G: "the same
normalizations as [24]"), integer labels, and train / validation / test
splits. Preparation, in this order:

* ``uint8`` pixels scaled to [0, 1];
* 28x28 images (MNIST, Fashion-MNIST, notMNIST) **zero-padded** by 2 pixels
  on every side to 32x32 (appendix G); any other size than 32x32 is an
  error unless ``resize=True`` (bilinear ``tf.image.resize`` to 32x32);
* per-channel ``(x - mean) / std`` with the data set's constants
  (``NORMALIZATION``, HAT's values; for grayscale sets computed with the
  padding);
* grayscale images repeated to 3 equal channels (after normalization, as
  HAT's ``image.expand(1, 3, ...)``) so that one encoder takes every set.

The validation split (early stopping) is ``VAL_FRACTION`` (10%) of the
training split, drawn with ``SPLIT_SEED``; the test split is the data set's
own. notMNIST exists here only as its 10000-image test file: it is split
into 8000 training and 2000 test images (``NOTMNIST_TEST_FRACTION``) with
``SPLIT_SEED`` (notMNIST holds
duplicates, so a few test images also occur in training).

Data files: ``data_dir``, else ``$TFMETA_DATA``, else ``../shared/data``
beside the repository (the first that applies; nothing is downloaded).
MNIST / Fashion-MNIST / notMNIST are read from ``<name>/*-idx?-ubyte.gz``
and CIFAR-10 from ``cifar10/cifar10-jpg.tar.gz`` (JPEGs, decoded once and
cached as ``.npz`` in ``$TFMETA_CACHE``, default ``~/.cache/tfmeta``, a
directory this program owns; never next to the data). Any other data set
(SVHN, CIFAR-100, Facescrub, traffic signs) comes in through ``from_arrays``
or ``from_tfds`` (a ``tensorflow-datasets`` builder reading a local
``data_dir``; nothing downloaded).
"""

import collections
import gzip
import hashlib
import io
import os
import pathlib
import re
import struct
import tarfile
import tempfile
import zlib

import numpy as np

from tfmeta.errors import MultiCVDataError

IMAGE_SIZE = 32
VAL_FRACTION = 0.1
SPLIT_SEED = 2019
NOTMNIST_TEST_FRACTION = 0.2   # of the notMNIST images, held out for test
CACHE_VERSION = 1

_CIFAR_MEAN = tuple(x / 255 for x in (125.3, 123.0, 113.9))
_CIFAR_STD = tuple(x / 255 for x in (63.0, 62.1, 66.7))

#: ``name: (mean, std)`` per channel, HAT's constants (its ``mixture.py``).
NORMALIZATION = {
    "mnist": ((0.1,), (0.2752,)),
    "fashion-mnist": ((0.2190,), (0.3318,)),
    "notmnist": ((0.4254,), (0.4501,)),
    "cifar10": (_CIFAR_MEAN, _CIFAR_STD),
    "cifar100": (_CIFAR_MEAN, _CIFAR_STD),
    "svhn": ((0.4377, 0.4438, 0.4728), (0.198, 0.201, 0.197)),
    "traffic-signs": ((0.3398, 0.3117, 0.3210), (0.2755, 0.2647, 0.2712)),
}

#: The data sets this module reads from files, and the paper's whole list.
FILE_DATASETS = ("mnist", "fashion-mnist", "notmnist", "cifar10")
PAPER_DATASETS = ("facescrub", "mnist", "cifar100", "notmnist", "svhn",
                  "fashion-mnist", "cifar10", "traffic-signs")

_IDX = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
_CIFAR_TAR = "cifar10-jpg.tar.gz"
_CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog",
                  "frog", "horse", "ship", "truck")
_CIFAR_JPG = re.compile(r"^(?:\./)?[^/]+/(train|test)/([a-z]+)/[^/]+\.jpg$")

DataSet = collections.namedtuple(
    "DataSet", ["name", "train", "val", "test", "num_classes"])
DataSet.__doc__ = """A whole data set as one task: ``train``, ``val``
(early stopping) and ``test`` are ``(x [N, 32, 32, 3] float32, y [N] int32)``
pairs; ``num_classes`` the head's width."""


# ----------------------------------------------------------- locations
def data_dirs(data_dir=None):
    """The directories searched: ``data_dir`` if given, else
    ``$TFMETA_DATA`` if set, else ``../shared/data`` beside the repo."""
    if data_dir is not None:
        return [pathlib.Path(data_dir)]
    if os.environ.get("TFMETA_DATA"):
        return [pathlib.Path(os.environ["TFMETA_DATA"])]
    import tfmeta
    return [pathlib.Path(tfmeta.__file__).resolve().parents[1]
            / ".." / "shared" / "data"]


def _files(name):
    if name in ("mnist", "fashion-mnist"):
        return _IDX["train"] + _IDX["test"]
    if name == "notmnist":
        return _IDX["test"]
    if name == "cifar10":
        return (_CIFAR_TAR,)
    raise ValueError(f"unknown file data set {name!r}; these are read from "
                     f"files: {list(FILE_DATASETS)} (others: from_arrays / "
                     "from_tfds).")


def find_files(name, data_dir=None):
    """``{file name: path}`` of data set ``name``; ``FileNotFoundError``
    naming the missing file and every directory looked in."""
    looked, missing = [], None
    for base in data_dirs(data_dir):
        folder = base / name
        looked.append(str(folder))
        paths = {f: folder / f for f in _files(name)}
        absent = [f for f, p in paths.items() if not p.is_file()]
        if not absent:
            return paths
        missing = missing or absent[0]
    raise FileNotFoundError(
        f"{name}: data file {missing} not found; looked in "
        + ", ".join(looked) + f" (TFMETA_DATA={os.environ.get('TFMETA_DATA')!r}"
        "). Pass data_dir=/--data-dir or set TFMETA_DATA to a directory "
        f"holding {name}/ (nothing is downloaded).")


def available(data_dir=None):
    """The file data sets whose files are all present, in ``FILE_DATASETS``
    order."""
    out = []
    for name in FILE_DATASETS:
        try:
            find_files(name, data_dir)
        except FileNotFoundError:
            continue
        out.append(name)
    return out


def cache_dir():
    """``$TFMETA_CACHE`` or ``~/.cache/tfmeta``: where decoded JPEGs go."""
    return pathlib.Path(os.environ.get("TFMETA_CACHE")
                        or pathlib.Path.home() / ".cache" / "tfmeta")


# ------------------------------------------------------------- readers
def read_idx(path):
    """The array of a gzipped IDX file (``uint8`` images ``[N, H, W]`` or
    labels ``[N]``); ``MultiCVDataError`` if it is not one."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise MultiCVDataError(
            f"{path} is not a readable gzip file (truncated or corrupt?): "
            f"{err}") from err
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise MultiCVDataError(f"{path} is not an unsigned-byte IDX file "
                               "(bad magic number).")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    size = int(np.prod(dims))
    data = np.frombuffer(raw, np.uint8, count=-1, offset=4 + 4 * ndim)
    if data.size != size:
        raise MultiCVDataError(
            f"{path}: the header promises {dims} = {size} bytes but "
            f"{data.size} follow (truncated?).")
    return data.reshape(dims)


def _read_pair(paths, images, labels):
    x, y = read_idx(paths[images]), read_idx(paths[labels])
    if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
        raise MultiCVDataError(
            f"{paths[images]} ({x.shape}) and {paths[labels]} ({y.shape}) do "
            "not pair up as [N, H, W] images and [N] labels.")
    return x, y.astype(np.int32)


def _cache_key(name, paths):
    h = hashlib.sha1(f"multicv-{name}-v{CACHE_VERSION}".encode())
    for p in paths:
        st = p.stat()
        h.update(f"|{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def decode_cifar_tar(path):
    """``{"train"|"test": (images [N, 32, 32, 3] uint8, labels [N])}`` of
    a tar.gz of ``<root>/{train,test}/<class>/*.jpg`` (sorted by name)."""
    from PIL import Image

    found = {"train": [], "test": []}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                match = _CIFAR_JPG.match(member.name)
                if not member.isfile() or not match:
                    continue
                split, cls = match.groups()
                if cls not in _CIFAR_CLASSES:
                    raise MultiCVDataError(
                        f"{path}: unknown CIFAR-10 class folder {cls!r} "
                        f"({member.name}).")
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                    array = np.asarray(im.convert("RGB"), np.uint8)
                if array.shape != (IMAGE_SIZE, IMAGE_SIZE, 3):
                    raise MultiCVDataError(
                        f"{path}: {member.name} is {array.shape[1]}x"
                        f"{array.shape[0]}, not 32x32 like CIFAR-10.")
                found[split].append((member.name, array,
                                     _CIFAR_CLASSES.index(cls)))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise MultiCVDataError(
            f"{path} is unreadable (truncated or corrupt?): {err}") from err
    out = {}
    for split, items in found.items():
        if not items:
            raise MultiCVDataError(
                f"{path} holds no {split} JPEGs laid out as "
                "<root>/{train,test}/<class>/NNNN.jpg.")
        items.sort(key=lambda t: t[0])
        out[split] = (np.stack([t[1] for t in items]),
                      np.array([t[2] for t in items], np.int32))
    return out


def _cached_cifar(path, use_cache=True):
    cache = cache_dir() / f"multicv-cifar10-{_cache_key('cifar10', [path])}.npz"
    if use_cache and cache.is_file():
        try:
            with np.load(cache) as f:
                return {s: (f[f"{s}_x"], f[f"{s}_y"]) for s in ("train", "test")}
        except (OSError, ValueError, KeyError):
            pass  # a broken cache is rebuilt
    out = decode_cifar_tar(path)
    if use_cache:
        tmp = None
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".multicv-", suffix=".npz.tmp",
                                       dir=cache.parent)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{f"{s}_{k}": v for s, (x, y) in out.items()
                               for k, v in (("x", x), ("y", y))})
            os.replace(tmp, cache)
        except OSError:
            if tmp is not None and os.path.exists(tmp):
                os.remove(tmp)  # only the temporary file this call made
    return out


def read_raw(name, data_dir=None, use_cache=True):
    """``{"train": (x, y), "test": (x, y)}`` of a file data set, ``uint8``
    images as stored (notMNIST split into train/test with ``SPLIT_SEED``)."""
    paths = find_files(name, data_dir)
    if name == "cifar10":
        return _cached_cifar(paths[_CIFAR_TAR], use_cache)
    if name == "notmnist":
        x, y = _read_pair(paths, *_IDX["test"])
        order = np.random.default_rng(SPLIT_SEED).permutation(len(x))
        cut = int(round(NOTMNIST_TEST_FRACTION * len(x)))
        test, train = order[:cut], order[cut:]
        return {"train": (x[train], y[train]), "test": (x[test], y[test])}
    return {s: _read_pair(paths, *_IDX[s]) for s in ("train", "test")}


# -------------------------------------------------------- preparation
def prepare_images(x, mean, std, resize=False, name="data set"):
    """``uint8`` (or [0, 1] float) images ``[N, H, W]`` or ``[N, H, W, C]``
    -> normalized ``float32 [N, 32, 32, 3]`` (module docstring)."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(
            f"{name}: images must be [N, H, W] or [N, H, W, 1|3]; got shape "
            f"{x.shape}.")
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else \
        x.astype(np.float32)
    h, w = x.shape[1:3]
    if (h, w) == (28, 28):
        x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    elif (h, w) != (IMAGE_SIZE, IMAGE_SIZE):
        if not resize:
            raise ValueError(
                f"{name}: images are {h}x{w}; the Multi-CV encoder takes "
                "32x32 (28x28 is zero-padded). Pass resize=True to resize "
                "them bilinearly to 32x32.")
        import tensorflow as tf
        x = tf.image.resize(x, (IMAGE_SIZE, IMAGE_SIZE)).numpy()
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if mean.shape not in ((1,), (x.shape[-1],)) or mean.shape != std.shape:
        raise ValueError(
            f"{name}: mean {mean.tolist()} and std {std.tolist()} do not fit "
            f"{x.shape[-1]}-channel images.")
    x = (x - mean) / std
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x)


def _labels(y, name, split, num_classes):
    y = np.asarray(y)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name}: {split} labels must be a 1-D integer array; "
                         f"got {y.dtype} {y.shape}.")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: {split} labels must lie in [0, "
                         f"{num_classes}); got [{y.min()}, {y.max()}].")
    return y.astype(np.int32)


def from_arrays(name, train, test, num_classes=None, mean=None, std=None,
                resize=False, val_fraction=VAL_FRACTION, seed=SPLIT_SEED):
    """A ``DataSet`` from ``train = (x, y)`` and ``test = (x, y)`` arrays
    (images as ``prepare_images`` takes them). ``mean``/``std`` default to
    ``NORMALIZATION[name]``, else the training split's per-channel values;
    ``num_classes`` to ``max(label) + 1``."""
    (xtr, ytr), (xte, yte) = train, test
    if len(xtr) != len(ytr) or len(xte) != len(yte):
        raise ValueError(f"{name}: images and labels differ in length "
                         f"(train {len(xtr)}/{len(ytr)}, test {len(xte)}/"
                         f"{len(yte)}).")
    shapes = {np.shape(xtr)[1:3], np.shape(xte)[1:3]}
    if len(shapes) > 1:
        raise ValueError(f"{name}: train and test images differ in shape "
                         f"({np.shape(xtr)[1:]} vs {np.shape(xte)[1:]}).")
    if num_classes is None:
        num_classes = int(max(np.max(ytr), np.max(yte))) + 1
    if mean is None:
        if name in NORMALIZATION:
            mean, std = NORMALIZATION[name]
        else:
            raw = np.asarray(xtr, np.float32)
            raw = raw / 255.0 if np.asarray(xtr).dtype == np.uint8 else raw
            axes = tuple(range(raw.ndim - 1)) if raw.ndim == 4 else None
            mean = np.atleast_1d(raw.mean(axis=axes))
            std = np.atleast_1d(raw.std(axis=axes))
    ytr = _labels(ytr, name, "train", num_classes)
    yte = _labels(yte, name, "test", num_classes)
    xtr = prepare_images(xtr, mean, std, resize, name)
    xte = prepare_images(xte, mean, std, resize, name)
    order = np.random.default_rng(seed).permutation(len(xtr))
    n_val = int(round(val_fraction * len(xtr)))
    if not 0 < n_val < len(xtr):
        raise ValueError(f"{name}: val_fraction={val_fraction} of "
                         f"{len(xtr)} training images leaves an empty split.")
    val, tr = order[:n_val], order[n_val:]
    return DataSet(name, (xtr[tr], ytr[tr]), (xtr[val], ytr[val]), (xte, yte),
                   int(num_classes))


def load(name, data_dir=None, use_cache=True, **options):
    """A file data set (``FILE_DATASETS``) as a ``DataSet``; ``options`` go
    to ``from_arrays``."""
    raw = read_raw(name, data_dir, use_cache)
    return from_arrays(name, raw["train"], raw["test"], num_classes=10,
                       **options)


def from_tfds(name, builder, data_dir, train_split="train",
              test_split="test", image_key="image", label_key="label",
              **options):
    """A ``DataSet`` from a ``tensorflow-datasets`` builder (e.g.
    ``"svhn_cropped"``, ``"cifar100"``) already prepared in the local
    ``data_dir`` (nothing is downloaded); ``options`` go to
    ``from_arrays`` (``num_classes`` defaults to the label feature's)."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "from_tfds needs tensorflow-datasets: pip install 'tfmeta[data]'; "
            "or pass arrays to from_arrays.") from err
    try:
        b = tfds.builder(builder, data_dir=str(data_dir))
    except Exception as err:  # noqa: BLE001 - tfds raises many kinds
        raise FileNotFoundError(
            f"{name}: tensorflow-datasets has no data set {builder!r} in "
            f"{data_dir} ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "prepare it there first (nothing is downloaded).") from err
    if not b.is_prepared():
        raise FileNotFoundError(
            f"{name}: tensorflow-datasets data set {builder!r} is not "
            f"prepared in {data_dir} (looked for {b.data_dir}); prepare it "
            "there first (nothing is downloaded).")
    splits = []
    for split in (train_split, test_split):
        data = tfds.as_numpy(b.as_dataset(split=split, batch_size=-1))
        splits.append((data[image_key], data[label_key]))
    feature = b.info.features[label_key]
    if getattr(feature, "num_classes", None):
        options.setdefault("num_classes", feature.num_classes)
    return from_arrays(name, *splits, **options)


def subsample(data, train=None, val=None, test=None, seed=SPLIT_SEED):
    """A copy of ``data`` with at most ``train``/``val``/``test`` examples
    per split, a seeded random subset (``None``: all)."""
    rng = np.random.default_rng(seed)

    def cut(split, n):
        x, y = split
        if n is None or n >= len(x):
            return split
        keep = np.sort(rng.choice(len(x), n, replace=False))
        return x[keep], y[keep]

    return data._replace(train=cut(data.train, train), val=cut(data.val, val),
                         test=cut(data.test, test))


# ------------------------------------------------------------- learner
def learner(num_classes=10, seed=None, filters=64, blocks=4,
            bn_momentum=0.9):
    """The Multi-CV learner: the Omniglot encoder of appendix F (4 x [3x3
    conv, 64 filters, batch norm, ReLU, 2x2 max-pool]) on 32x32x3 images
    (a 2x2x64 feature map, flattened) and a final linear head ``Dense``
    named ``"head"`` (logits), the per-task head of ``multi_head=True``.
    Batch norm keeps moving statistics with ``bn_momentum`` (a whole data
    set is evaluated with them, not with the last minibatch's)."""
    import keras

    from tfmeta.layers import BatchNormalization

    init = lambda i: keras.initializers.GlorotUniform(  # noqa: E731
        None if seed is None else seed + i)
    layers = [keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))]
    for i in range(blocks):
        layers += [keras.layers.Conv2D(filters, 3, padding="same",
                                       kernel_initializer=init(i)),
                   BatchNormalization(momentum=bn_momentum),
                   keras.layers.ReLU(), keras.layers.MaxPooling2D(2)]
    layers += [keras.layers.Flatten(),
               keras.layers.Dense(num_classes, kernel_initializer=init(blocks),
                                  name="head")]
    return keras.Sequential(layers, name="multicv_learner")
