"""Multi-CV data sets (tfmeta.tasks.multicv) on tiny synthetic files."""

import gzip
import io
import os
import struct
import tarfile

import numpy as np
import pytest

from tfmeta.errors import MultiCVDataError
from tfmeta.tasks import multicv


def write_idx(path, array):
    array = np.asarray(array, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_mnist_like(folder, n_train=20, n_test=10, train=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    splits = (("train", n_train), ("t10k", n_test)) if train else \
        (("t10k", n_test),)
    out = {}
    for prefix, n in splits:
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n) % 10
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
        out[prefix] = (x, y)
    return out


def write_cifar_tar(path, per_class=1, size=32):
    from PIL import Image

    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            for cls in ("airplane", "cat", "truck"):
                for k in range(per_class):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(
                        0, 256, (size, size, 3), dtype=np.uint8)).save(
                        buf, format="JPEG")
                    info = tarfile.TarInfo(
                        f"cifar10-jpg/{split}/{cls}/{k:04d}.jpg")
                    info.size = len(buf.getvalue())
                    buf.seek(0)
                    tar.addfile(info, buf)


def test_mnist_like_is_padded_normalized_and_three_channel(tmp_path):
    raw = write_mnist_like(tmp_path / "mnist")
    data = multicv.load("mnist", data_dir=tmp_path)
    assert data.train[0].shape == (18, 32, 32, 3)
    assert data.val[0].shape == (2, 32, 32, 3)
    assert data.test[0].shape == (10, 32, 32, 3)
    assert data.num_classes == 10
    mean, std = multicv.NORMALIZATION["mnist"]
    x = data.test[0]
    # zero padding (2 pixels) normalized like a black pixel; 3 equal channels
    np.testing.assert_allclose(x[:, :2], -mean[0] / std[0], rtol=1e-6)
    np.testing.assert_allclose(x[..., 0], x[..., 2])
    inner = raw["t10k"][0].astype(np.float32) / 255
    np.testing.assert_allclose(x[:, 2:30, 2:30, 1], (inner - mean[0]) / std[0],
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(data.test[1], raw["t10k"][1])


def test_notmnist_split_is_fixed_and_disjoint(tmp_path):
    raw = write_mnist_like(tmp_path / "notmnist", n_test=50, train=False)
    a = multicv.read_raw("notmnist", data_dir=tmp_path)
    b = multicv.read_raw("notmnist", data_dir=tmp_path)
    assert len(a["test"][0]) == 10 and len(a["train"][0]) == 40
    np.testing.assert_array_equal(a["test"][0], b["test"][0])
    rows = {r.tobytes() for r in raw["t10k"][0]}
    assert {r.tobytes() for r in a["train"][0]} | {
        r.tobytes() for r in a["test"][0]} == rows


def test_cifar_jpegs_cached_in_the_programs_cache_only(tmp_path, monkeypatch):
    data_dir = tmp_path / "data"
    (data_dir / "cifar10").mkdir(parents=True)
    write_cifar_tar(data_dir / "cifar10" / "cifar10-jpg.tar.gz", per_class=4)
    cache = tmp_path / "cache"
    monkeypatch.setenv("TFMETA_CACHE", str(cache))
    before = sorted(os.listdir(data_dir / "cifar10"))
    raw = multicv.read_raw("cifar10", data_dir=data_dir)
    assert raw["train"][0].shape == (12, 32, 32, 3)
    assert sorted(set(raw["train"][1].tolist())) == [0, 3, 9]
    assert sorted(os.listdir(data_dir / "cifar10")) == before
    cached = list(cache.glob("multicv-cifar10-*.npz"))
    assert len(cached) == 1
    again = multicv.read_raw("cifar10", data_dir=data_dir)  # from the cache
    np.testing.assert_array_equal(again["test"][0], raw["test"][0])
    data = multicv.load("cifar10", data_dir=data_dir)
    assert data.train[0].shape[1:] == (32, 32, 3)


def test_missing_file_names_it_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv("TFMETA_DATA", raising=False)
    write_mnist_like(tmp_path / "mnist")
    os.remove(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz"
                       r".*" + str(tmp_path / "mnist")):
        multicv.load("mnist", data_dir=tmp_path)
    monkeypatch.setenv("TFMETA_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(FileNotFoundError, match="elsewhere"):
        multicv.load("fashion-mnist")
    assert multicv.available(tmp_path) == []


def test_corrupt_idx_is_a_clear_error(tmp_path):
    write_mnist_like(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "rb") as f:
        raw = f.read()
    with gzip.open(path, "wb") as f:
        f.write(raw[:-100])
    with pytest.raises(MultiCVDataError, match="truncated"):
        multicv.load("mnist", data_dir=tmp_path)


def test_other_shapes_error_or_stated_resize():
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (20, 20, 20, 3), dtype=np.uint8),
             np.arange(20) % 4)
    test = (rng.integers(0, 256, (5, 20, 20, 3), dtype=np.uint8),
            np.arange(5) % 4)
    with pytest.raises(ValueError, match=r"20x20.*resize=True"):
        multicv.from_arrays("signs", train, test)
    data = multicv.from_arrays("signs", train, test, resize=True)
    assert data.train[0].shape == (18, 32, 32, 3) and data.num_classes == 4
    bad = (test[0][:, :16, :16], test[1])
    with pytest.raises(ValueError, match="differ in shape"):
        multicv.from_arrays("signs", train, bad, resize=True)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        multicv.from_arrays("signs", train, test, num_classes=3, resize=True)


def test_subsample_is_seeded():
    rng = np.random.default_rng(0)
    train = (rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
             np.arange(40) % 10)
    data = multicv.from_arrays("any", train, train)
    a = multicv.subsample(data, train=10, test=7)
    b = multicv.subsample(data, train=10, test=7)
    assert len(a.train[0]) == 10 and len(a.test[0]) == 7
    assert len(a.val[0]) == len(data.val[0])
    np.testing.assert_array_equal(a.train[0], b.train[0])


@pytest.mark.skipif("notmnist" not in multicv.available(),
                    reason="notMNIST not found (../shared/data or TFMETA_DATA)")
def test_real_notmnist_smoke():
    data = multicv.load("notmnist")
    assert data.train[0].shape == (7200, 32, 32, 3)
    assert data.test[0].shape == (2000, 32, 32, 3)
    assert sorted(set(data.test[1].tolist())) == list(range(10))


def test_tfds_builder_source(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 28, 28, 1), dtype=np.uint8)
    y = np.arange(12) % 3

    class TfmetaMulticvToy(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=(
                tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(28, 28, 1)),
                    "label": tfds.features.ClassLabel(num_classes=5)})))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(0, 10),
                    "test": self._generate_examples(10, 12)}

        def _generate_examples(self, a, b):
            for i in range(a, b):
                yield i, {"image": x[i], "label": int(y[i])}

    name = "tfmeta_multicv_toy"
    with pytest.raises(FileNotFoundError, match="not prepared"):
        multicv.from_tfds("toy", name, tmp_path)
    TfmetaMulticvToy(data_dir=str(tmp_path)).download_and_prepare()
    data = multicv.from_tfds("toy", name, tmp_path, mean=(0.5,), std=(0.25,))
    ref = multicv.from_arrays("toy", (x[:10], y[:10]), (x[10:], y[10:]),
                              num_classes=5, mean=(0.5,), std=(0.25,))
    assert data.num_classes == 5
    np.testing.assert_allclose(np.sort(data.test[0].ravel()),
                               np.sort(ref.test[0].ravel()))
    assert data.train[0].shape == (9, 32, 32, 3)
