"""Omniglot few-shot classification: the protocol of MAML (Finn et al.,
2017, section 5.2) and Reptile (Nichol et al., 2018, section 5.1).

* all 1623 characters of both archives are classes; a fixed seeded
  permutation (``SPLIT_SEED``) puts 1200 of them in meta-training and the
  other 423 in the test split (``validation=n`` takes the last ``n`` of the
  1200 for choosing hyper-parameters instead of meta-training);
* images 28x28, ``float32`` in [0, 1] with ink = 1 (the archives are read
  and cached by ``tfmeta.tasks.omniglot``);
* during meta-training every character rotated by 0, 90, 180 and 270
  degrees is a class of its own (4800 classes); test characters are not
  rotated;
* an N-way K-shot episode (``tfmeta.tasks.fewshot.episodes``) draws N
  classes and K support plus Q query drawings of each (Reptile evaluates
  with one query drawing per class).

``convnet`` is the papers' 4-layer network: 4 x [3x3 conv, 64 filters,
stride 2, same padding, batch norm, ReLU], then a linear layer on the
flattened 2x2x64 features (Reptile's code) or on their spatial mean (MAML's
Omniglot code); ``downsample="max"`` gives the max-pooling variant (stride
1, 2x2 max-pool) that MAML uses on MiniImageNet.
"""

from tfmeta.tasks import fewshot, omniglot

NUM_CHARACTERS = 1623
"""Characters (classes) in Omniglot."""
NUM_TRAIN_CHARACTERS = 1200
"""Characters for meta-training; the other 423 are the test classes."""
SPLIT_SEED = 0
"""Seed of the class split."""
ROTATIONS = (0, 90, 180, 270)
"""Rotations (degrees) that make new classes for meta-training."""
IMAGE_SIZE = omniglot.IMAGE_SIZE
"""Image side in pixels."""

_POOLS = {}


class OmniglotFewShot:
    """The decoded characters and their class split.

    Attributes:
      pool: ``tfmeta.tasks.fewshot.ClassPool`` of the 1623 characters
        (``[20, 28, 28, 1]`` drawings each, class names
        ``"<Alphabet>/characterNN"``).
      splits: ``{"train", "validation", "test"}`` class indices.

    Args:
      pool: the ``ClassPool``.
      splits: the class indices of each split (``fewshot.split_classes``).
    """

    def __init__(self, pool, splits):
        self.pool, self.splits = pool, splits

    def classes(self, split):
        if split not in self.splits:
            raise ValueError("split must be 'train', 'validation' or 'test', "
                             f"got {split!r}.")
        if len(self.splits[split]) == 0:
            raise ValueError(f"the {split!r} split is empty (pass "
                             "validation=n to load() for a validation split).")
        return self.splits[split]


def load(data_dir=None, validation=0, seed=SPLIT_SEED):
    """Omniglot's 1623 characters split 1200 / 423 (``validation`` of the
    1200 held out for validation). Archives as in ``omniglot.load``.

    Args:
      data_dir: where the archives are (default ``None``: as
        ``omniglot.find_archives``).
      validation: training characters held out for validation (default 0).
      seed: seed of the class split (default ``SPLIT_SEED``).
    """
    paths = omniglot.find_archives(data_dir)
    key = tuple(str(p.resolve()) for p in paths)
    if key not in _POOLS:
        images, alphabets, characters = omniglot.load_raw(data_dir)
        if images.shape[0] != NUM_CHARACTERS:
            raise omniglot.OmniglotDataError(
                f"expected {NUM_CHARACTERS} characters in {paths}, found "
                f"{images.shape[0]}.")
        names = [f"{a}/character{c:02d}" for a, c in zip(alphabets, characters)]
        _POOLS[key] = fewshot.ClassPool(images[..., None], class_names=names,
                                        scale=1 / 255)
    if isinstance(validation, bool) or not isinstance(validation, int) \
            or not 0 <= validation < NUM_TRAIN_CHARACTERS:
        raise ValueError(f"validation must be an integer in [0, "
                         f"{NUM_TRAIN_CHARACTERS}), got {validation!r}.")
    splits = fewshot.split_classes(
        NUM_CHARACTERS, test=NUM_CHARACTERS - NUM_TRAIN_CHARACTERS,
        validation=validation, seed=seed)
    return OmniglotFewShot(_POOLS[key], splits)


def dataset(split="train", ways=5, shots=1, query_shots=1, meta_batch_size=1,
            seed=0, rotations=None, data=None, data_dir=None, **kwargs):
    """``tf.data`` episodes of the split's characters; rotated classes by
    default for ``"train"`` only (``rotations=(0,)`` turns them off).

    Args:
      split: ``"train"`` (default), ``"validation"`` or ``"test"``.
      ways: classes per episode (default 5).
      shots: support examples per class (default 1).
      query_shots: query examples per class (default 1).
      meta_batch_size: episodes per element (default 1).
      seed: int seed of the episodes (default 0).
      rotations: rotations in degrees (default ``None``: ``ROTATIONS`` for
        ``"train"``, none otherwise).
      data: an ``OmniglotFewShot`` (default ``None``: ``load(data_dir)``).
      data_dir: where the archives are (default ``None``).
      **kwargs: the other ``fewshot.episodes`` arguments (``augment``,
        ``permute_labels``, ``start``, ``count``, ...).
    """
    data = data or load(data_dir)
    if rotations is None:
        rotations = ROTATIONS if split == "train" else (0,)
    return fewshot.episodes(
        data.pool, ways, shots, query_shots, meta_batch_size,
        classes=data.classes(split), rotations=rotations, seed=seed, **kwargs)


def convnet(num_classes, downsample="stride", head="flatten", filters=64,
            blocks=4, seed=None, image_size=IMAGE_SIZE, channels=1):
    """The MAML / Reptile few-shot network (see the module docstring).

    ``downsample``: ``"stride"`` (stride-2 convs: Omniglot in both papers)
    or ``"max"`` (2x2 max-pooling); ``head``: ``"flatten"`` (Reptile) or
    ``"mean"`` (spatial mean, MAML's Omniglot code). Batch norm is
    ``tfmeta.layers.BatchNormalization`` (exact second derivatives).

    Args:
      num_classes: logits (the episode's ways).
      downsample: ``"stride"`` (default) or ``"max"``.
      head: ``"flatten"`` (default) or ``"mean"``.
      filters: filters per conv (default 64).
      blocks: conv blocks (default 4).
      seed: Glorot-uniform initializers seeded ``seed + i`` (default
        ``None``).
      image_size: input side in pixels (default 28).
      channels: input channels (default 1).
    """
    import keras

    from tfmeta.layers import BatchNormalization

    if downsample not in ("stride", "max"):
        raise ValueError(f"downsample must be 'stride' or 'max', got "
                         f"{downsample!r}.")
    if head not in ("flatten", "mean"):
        raise ValueError(f"head must be 'flatten' or 'mean', got {head!r}.")
    init = lambda i: keras.initializers.GlorotUniform(  # noqa: E731
        None if seed is None else seed + i)
    layers = [keras.Input((image_size, image_size, channels))]
    for i in range(blocks):
        layers.append(keras.layers.Conv2D(
            filters, 3, strides=2 if downsample == "stride" else 1,
            padding="same", kernel_initializer=init(i)))
        layers += [BatchNormalization(), keras.layers.ReLU()]
        if downsample == "max":
            layers.append(keras.layers.MaxPooling2D(2, padding="same"))
    layers.append(keras.layers.Flatten() if head == "flatten"
                  else keras.layers.GlobalAveragePooling2D())
    layers.append(keras.layers.Dense(num_classes,
                                     kernel_initializer=init(blocks)))
    return keras.Sequential(layers, name=f"fewshot_convnet_{downsample}")

