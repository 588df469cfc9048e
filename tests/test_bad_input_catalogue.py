"""The bad-input catalogue (docs/bad_input.md): each kind of bad input gets a
clear, specific error, and no existing checkpoint or result is damaged."""

import hashlib
import json
import pathlib
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, mlp, requires_omniglot, task_batch
from tfmeta import cli

BASE = ["--steps", "20", "--checkpoint-every", "10", "--meta-batch", "2",
        "--inner-steps", "3", "--eval-steps", "3", "--test-tasks", "4",
        "--no-determinism"]


def digest(directory):
    """Hash of every file in a run directory."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(pathlib.Path(directory).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("catalogue") / "run"
    assert cli.main(["train", "leap", *BASE, "--out", str(path)]) == 0
    return path


def config_file(tmp_path, text, suffix=".yaml"):
    path = tmp_path / f"config{suffix}"
    path.write_text(text)
    return str(path)


CLI_CASES = {
    "unknown method": (["train", "leep"], "unknown method 'leep'; choose from"),
    "unknown task family": (["train", "leap", "--tasks", "moons"],
                            "unknown task family 'moons'"),
    "zero meta-steps": (["train", "leap", "--steps", "0"],
                        "steps must be a positive integer, got 0"),
    "zero inner steps": (["train", "leap", "--inner-steps", "0"],
                         "inner_steps must be a positive integer, got 0"),
    "negative inner learning rate": (["train", "leap", "--inner-lr", "-0.1"],
                                     "inner_lr must be a positive number, got -0.1"),
    "zero meta learning rate": (["train", "leap", "--meta-lr", "0"],
                                "meta_lr must be a positive number, got 0.0"),
    "non-finite learning rate": (["train", "leap", "--meta-lr", "nan"],
                                 "meta_lr must be a positive number, got nan"),
    "checkpoint interval not dividing the steps": (
        ["train", "leap", "--steps", "25", "--checkpoint-every", "10"],
        "steps (25) must be a multiple of checkpoint_every (10)"),
    "unknown Leap metric": (["train", "leap", "--method-option", "metric=lenght"],
                            "unknown method option metric 'lenght'; choose from"),
    "unknown method option": (["train", "leap", "--method-option", "colour=1"],
                              "bad method_options for leap: unknown option "
                              "'colour'; leap takes"),
    "malformed method option": (["train", "leap", "--method-option", "metric"],
                                "--method-option expects KEY=VALUE"),
    "unknown optimizer": (["train", "leap", "--meta-optimizer", "adamw"],
                          "unknown meta_optimizer 'adamw'"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_command_line_bad_input(case, run, capsys):
    args, message = CLI_CASES[case]
    before = digest(run)
    # Later flags override BASE; every case targets the existing run.
    code = cli.main(args[:2] + BASE + args[2:] + ["--out", str(run)])
    assert code == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert digest(run) == before


CONFIG_CASES = {
    "missing config file": (None, "cannot read config file"),
    "config that is not YAML": ("steps: [unclosed", "is not valid YAML"),
    "config that is not JSON": ("{steps: 1}", "is not valid JSON"),
    "config that is not a mapping": ("- 1\n- 2\n", "must hold a mapping of options"),
    "unknown config option": ("stepz: 10\n", "unknown option(s) ['stepz']"),
    "wrong type in config": ("steps: ten\n", "steps must be a positive integer, got 'ten'"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_unreadable_config(case, run, tmp_path, capsys):
    text, message = CONFIG_CASES[case]
    suffix = ".json" if "JSON" in case else ".yaml"
    path = str(tmp_path / "absent.yaml") if text is None else config_file(
        tmp_path, text, suffix)
    before = digest(run)
    code = cli.main(["train", "leap", "--config", path, "--out", str(run)])
    assert code == cli.EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert digest(run) == before


def test_resume_with_a_different_config_is_refused(run, capsys):
    before = digest(run)
    args = ["train", "leap", *BASE, "--inner-lr", "0.05", "--out", str(run)]
    assert cli.main(args) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "holds a run with a different configuration (inner_lr: 0.02 -> 0.05)" in err
    assert digest(run) == before


def test_out_that_is_a_file(tmp_path, capsys):
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    assert cli.main(["train", "leap", *BASE, "--out", str(target)]) == 2
    assert "exists and is not a directory" in capsys.readouterr().err
    assert target.read_text() == "keep me"


def test_evaluate_something_that_is_not_a_run(tmp_path, capsys):
    assert cli.main(["evaluate", str(tmp_path)]) == 2
    assert "is not a tfmeta run directory (no config.json)" in capsys.readouterr().err


@pytest.mark.parametrize("damage,message", [
    ("truncate weights", "is unreadable or corrupt"),
    ("garble state", "checkpoint.json is unreadable or corrupt"),
    ("delete weights", "which is missing"),
])
def test_damaged_checkpoint_is_named_and_left_alone(run, tmp_path, capsys,
                                                    damage, message):
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    state = json.loads((copy / "checkpoint.json").read_text())
    weights = copy / state["weights"]
    if damage == "truncate weights":
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garble state":
        (copy / "checkpoint.json").write_text("{not json")
    else:
        weights.unlink()
    before = digest(copy)
    assert cli.main(["evaluate", str(copy)]) == 2
    assert message in capsys.readouterr().err
    assert cli.main(["train", "leap", *BASE, "--out", str(copy)]) == 2
    assert digest(copy) == before


def test_diverging_meta_training_exits_with_a_clear_error(tmp_path, capsys):
    out = tmp_path / "diverges"
    code = cli.main(["train", "reptile", *BASE, "--inner-lr", "1e30",
                     "--out", str(out)])
    assert code == cli.EXIT_NON_FINITE
    err = capsys.readouterr().err
    assert "meta-loss became" in err and "not applied" in err
    assert "No checkpoint was written yet (the first is at meta-step 10)" in err
    assert "meta-step 0" not in err  # there is no such checkpoint
    assert not (out / "checkpoint.json").exists()  # no bad checkpoint written


# --- the public API (more in test_errors.py) --------------------------------
def test_nan_in_task_data_is_named(tmp_path):
    batch = task_batch()
    batch["query_x"][0, 0, 0] = np.nan
    meta = tfmeta.Reptile(mlp([2, 4, 1]))
    meta.compile(optimizer="sgd", loss="mse")
    meta.save_weights(str(tmp_path / "saved.weights.h5"))
    saved = (tmp_path / "saved.weights.h5").read_bytes()
    before = [v.numpy() for v in meta.learner.trainable_variables]
    with pytest.raises(tfmeta.NonFiniteLossError, match="meta-loss became nan"):
        meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    for b, v in zip(before, meta.learner.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())
    assert (tmp_path / "saved.weights.h5").read_bytes() == saved


def test_inf_in_support_data_during_adapt():
    meta = tfmeta.Leap(mlp([2, 4, 1]))
    meta.compile(optimizer="sgd", loss="mse")
    x = np.ones((5, 2), "float32")
    with pytest.raises(FloatingPointError, match="adaptation diverged"):
        meta.adapt(x, np.full((5, 1), np.inf, "float32"))


def test_task_batch_of_wrong_type():
    meta = tfmeta.Leap(mlp([2, 4, 1]))
    meta.compile(optimizer="sgd", loss="mse")
    data = tf.data.Dataset.from_tensors(np.zeros((2, 3, 2), "float32"))
    with pytest.raises(ValueError, match="A task batch must be a dict with keys"):
        meta.fit(data, epochs=1, steps_per_epoch=1, verbose=0)


def test_unsupported_inner_optimizer():
    with pytest.raises(ValueError, match="inner_optimizer Lion is not supported"):
        tfmeta.Leap(mlp([2, 4, 1]), inner_optimizer=keras.optimizers.Lion(0.1))


# --- data and exports ---------------------------------------------------------
def test_missing_data_dir_names_the_files(run, tmp_path, capsys):
    before = digest(run)
    code = cli.main(["train", "leap", *BASE, "--tasks", "omniglot",
                     "--data-dir", str(tmp_path / "nowhere"), "--out", str(run)])
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "images_background.zip and images_evaluation.zip" in err
    assert str(tmp_path / "nowhere") in err
    assert digest(run) == before


@requires_omniglot
def test_truncated_archive_is_named(tmp_path, capsys, monkeypatch):
    from tfmeta.tasks import omniglot
    monkeypatch.setenv("TFMETA_CACHE", str(tmp_path / "cache"))
    source = omniglot.find_archives()
    data = tmp_path / "data" / "omniglot"
    data.mkdir(parents=True)
    for path in source:
        (data / path.name).write_bytes(path.read_bytes()[:200_000])
    out = tmp_path / "run"
    code = cli.main(["train", "leap", *BASE, "--tasks", "omniglot",
                     "--data-dir", str(tmp_path / "data"), "--out", str(out)])
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "images_background.zip is unreadable (truncated or corrupt?)" in err
    assert not out.exists()  # nothing was started


def test_export_never_overwrites_without_consent(run, tmp_path, capsys):
    target = tmp_path / "export"
    assert cli.main(["export", str(run), "--path", str(target)]) == 0
    exported = digest(target)
    assert cli.main(["export", str(run), "--path", str(target)]) == 2
    assert "exists and is not empty; pass --overwrite" in capsys.readouterr().err
    assert digest(target) == exported
    assert cli.main(["export", str(run), "--path", str(target), "--overwrite"]) == 0
    loaded = tf.saved_model.load(str(target))
    x = np.linspace(-1, 1, 5, dtype="float32")[:, None]
    assert loaded.serve(x)["predictions"].shape == (5, 1)
