"""``tfmeta train --strategy one|mirrored|multiworker``: the strategy and
the cluster in config.json, export and load of a model trained under a
strategy, and the errors of a bad strategy or a missing TF_CONFIG."""

import json
import os
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from tfmeta import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = ["train", "leap", "--steps", "2", "--checkpoint-every", "1",
         "--meta-batch", "2", "--inner-steps", "3", "--eval-steps", "3",
         "--test-tasks", "4", "--inner-batch-size", "5", "--no-deterministic"]


def checkpoint_weights(run):
    """The weights of a run's latest checkpoint, in a one-device model."""
    config = cli.resolve_config(json.loads((run / "config.json").read_text()),
                                {})
    meta, family = cli.build(config, distribute=False)
    cli._restore(meta, cli.RunDir(run))
    return meta, family


def test_train_mirrored_then_export_load_and_serve(tmp_path):
    run, export = tmp_path / "run", tmp_path / "export"
    assert cli.main(TRAIN + ["--strategy", "mirrored", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["strategy"] == "mirrored" and config["cluster"] is None
    assert json.loads((run / "checkpoint.json").read_text())["step"] == 2
    assert cli.main(["export", str(run), "--path", str(export)]) == 0
    meta, family = checkpoint_weights(run)
    loaded = tfmeta.load(export)
    for a, b in zip(meta.learner.weights, loaded.learner.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    tasks = family.test_tasks(1, seed=7)
    x = tasks["query_x"][0]
    served = tf.saved_model.load(str(export)).signatures["serving_default"](
        x=tf.constant(x))["predictions"]
    np.testing.assert_allclose(served.numpy(), meta.learner(x).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_unknown_strategy_and_multiworker_without_tf_config(tmp_path, capsys,
                                                           monkeypatch):
    out = tmp_path / "run"
    assert cli.main(TRAIN + ["--strategy", "tpu", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown strategy 'tpu'" in err and "multiworker" in err
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert cli.main(TRAIN + ["--strategy", "multiworker", "--out",
                             str(out)]) == 2
    err = capsys.readouterr().err
    assert "--strategy multiworker needs TF_CONFIG in the environment" in err
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": []}}')
    assert cli.main(TRAIN + ["--strategy", "multiworker", "--out",
                             str(out)]) == 2
    assert "TF_CONFIG is not a valid multiworker configuration" in \
        capsys.readouterr().err
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"cluster": {"worker": ["a:1"]}}))
    assert cli.main(TRAIN + ["--config", str(config), "--out", str(out)]) == 2
    assert "cluster is not an option" in capsys.readouterr().err
    assert not out.exists()  # nothing written


@pytest.mark.slow
def test_two_cli_workers_record_the_cluster_and_match_one_device(tmp_path):
    """``tfmeta train --strategy multiworker`` as two local workers
    (experiments/launch_multiworker.py): both record the cluster and end
    with the checkpoint of a one-device run (~1 min)."""
    sys.path.insert(0, str(ROOT / "experiments"))
    import launch_multiworker as launcher
    one = tmp_path / "one"
    assert cli.main(TRAIN + ["--out", str(one)]) == 0
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    hosts, processes = launcher.start(
        [sys.executable, "-m", "tfmeta"] + TRAIN + [
            "--strategy", "multiworker", "--out", str(tmp_path / "w{index}")],
        workers=2, env=env, cwd=ROOT)
    assert launcher.wait(processes, timeout=600) == [0, 0]
    expected, _ = checkpoint_weights(one)
    for index in range(2):
        run = tmp_path / f"w{index}"
        config = json.loads((run / "config.json").read_text())
        assert config["strategy"] == "multiworker"
        assert config["cluster"] == {"worker": hosts}
        meta, _ = checkpoint_weights(run)
        for a, b in zip(expected.weights, meta.weights):
            np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-5,
                                       atol=1e-6, err_msg=a.path)
