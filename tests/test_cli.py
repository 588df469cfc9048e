"""The command line: smoke test, exact resume after SIGKILL, determinism."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from tfmeta import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = ["train", "reptile", "--steps", "30", "--checkpoint-every", "10",
         "--meta-batch", "2", "--inner-steps", "4", "--eval-steps", "4",
         "--test-tasks", "8", "--meta-lr", "0.1"]


def tfmeta(args, env=None):
    """Runs ``python -m tfmeta ARGS`` in a fresh process."""
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
                    **(env or {}))
    return subprocess.run([sys.executable, "-m", "tfmeta", *args], env=full_env,
                          capture_output=True, text=True, timeout=300)


def final_weights(run):
    """Weights of a run's latest checkpoint, loaded into a fresh model."""
    config = cli.resolve_config(json.loads((run / "config.json").read_text()), {})
    meta, _ = cli.build(config)
    cli._restore(meta, cli.RunDir(run))
    return [v.numpy() for v in meta.weights]


def loss_column(run):
    lines = (run / "log.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [line.split(",")[header.index("loss")] for line in lines[1:]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "reference"
    done = tfmeta(TRAIN + ["--out", str(run)])
    assert done.returncode == 0, done.stderr
    return run


def test_train_writes_a_complete_run_directory(reference):
    for name in ("config.json", "checkpoint.json", "log.csv", "results.json",
                 "loss.png"):
        assert (reference / name).exists(), name
    assert json.loads((reference / "checkpoint.json").read_text())["step"] == 30
    assert len(loss_column(reference)) == 3
    results = json.loads((reference / "results.json").read_text())
    assert results["step"] == 30 and np.isfinite(results["test_loss"])
    assert any(files for _, _, files in os.walk(reference / "tensorboard"))


def test_evaluate_and_list(reference, capsys):
    assert cli.main(["evaluate", str(reference), "--test-tasks", "8"]) == 0
    evaluation = json.loads((reference / "evaluation.json").read_text())
    results = json.loads((reference / "results.json").read_text())
    assert evaluation["test_loss"] == pytest.approx(results["test_loss"], rel=1e-6)
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "leap" in out and "maml" in out and "sine" in out


@pytest.mark.slow   # 26 s; the resume tests below also compare bit for bit
def test_same_seed_is_bit_identical_and_another_seed_is_not(reference, tmp_path):
    again = tmp_path / "again"
    assert tfmeta(TRAIN + ["--out", str(again)]).returncode == 0
    for a, b in zip(final_weights(reference), final_weights(again)):
        np.testing.assert_array_equal(a, b)
    assert loss_column(reference) == loss_column(again)
    other = tmp_path / "other"
    assert tfmeta(TRAIN + ["--seed", "1", "--out", str(other)]).returncode == 0
    assert loss_column(reference) != loss_column(other)


@pytest.mark.parametrize("fault,step,resumed_from", [
    ("TFMETA_TEST_KILL_AT_STEP", "25", 20),        # SIGKILL between checkpoints
    ("TFMETA_TEST_KILL_IN_CHECKPOINT", "20", 10),  # SIGKILL while writing one
])
def test_killed_run_resumes_to_the_same_result(reference, tmp_path, fault, step,
                                               resumed_from):
    run = tmp_path / "run"
    killed = tfmeta(TRAIN + ["--out", str(run)], env={fault: step})
    assert killed.returncode == -signal.SIGKILL
    assert json.loads((run / "checkpoint.json").read_text())["step"] == resumed_from
    resumed = tfmeta(TRAIN + ["--out", str(run)])
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming reptile on sine at meta-step {resumed_from}" in resumed.stdout
    for a, b in zip(final_weights(reference), final_weights(run)):
        np.testing.assert_array_equal(a, b)
    assert loss_column(run) == loss_column(reference)
    ref = json.loads((reference / "results.json").read_text())
    assert json.loads((run / "results.json").read_text()) == ref
    assert not list(run.glob("*.tmp*"))  # no half-written checkpoint left
    assert logged_steps(run) == list(range(1, 31))  # each meta-step once


def logged_steps(run):
    """The steps of seconds_per_meta_step in the run's TensorBoard logs."""
    import tensorflow as tf
    steps = []
    for path in sorted((run / "tensorboard" / "steps").glob("events.*")):
        try:
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                steps += [event.step for v in event.summary.value
                          if v.tag == "seconds_per_meta_step"]
        except tf.errors.DataLossError:  # a file cut short by SIGKILL
            pass
    return sorted(steps)


def test_finished_run_is_not_trained_again(reference):
    before = (reference / "log.csv").read_text()
    done = tfmeta(TRAIN + ["--out", str(reference)])
    assert done.returncode == 0
    assert "starting" not in done.stdout and "resuming" not in done.stdout
    assert (reference / "log.csv").read_text() == before


def test_help_lists_every_option():
    text = cli.parser()._subparsers._group_actions[0].choices["train"].format_help()
    for option in cli.DEFAULTS:
        if option not in ("method", "method_options", "deterministic",
                          "cluster"):
            assert "--" + option.replace("_", "-") in text, option


def test_run_from_an_older_version_without_a_new_option_resumes(reference, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(reference, old)
    config = json.loads((old / "config.json").read_text())
    del config["vectorize_tasks"]  # an option this run's tfmeta did not have
    (old / "config.json").write_text(json.dumps(config))
    assert cli.main(["evaluate", str(old)]) == 0
    done = tfmeta(TRAIN + ["--out", str(old)])  # own process: op determinism
    assert done.returncode == 0, done.stderr
