"""``tfmeta train transfer --tasks pendulum|maze`` (issue 15): tiny runs
through the CLI write what a cos-sin run writes (the maze one under
``--strategy mirrored``: one replica here), the maze export's
``transfer`` signature equals the Python model, and options of another
family, an unknown family, an odd maze width or a missing MuJoCo fail with
a message naming the problem."""

import importlib.util
import json

import numpy as np
import pytest
import tensorflow as tf

from tfmeta import cli
from tfmeta import config as schema
from tfmeta.errors import UsageError
from tfmeta.tasks import maze

from test_transfer_export import run_weights

TRAIN = ["train", "transfer", "--steps", "1", "--checkpoint-every", "1",
         "--meta-batch", "2", "--test-tasks", "3"]


def assert_a_complete_run(run, tasks, steps=1):
    """What every ``tfmeta train`` run directory holds."""
    config = json.loads((run / "config.json").read_text())
    assert (config["method"], config["tasks"]) == ("transfer", tasks)
    assert json.loads((run / "checkpoint.json").read_text())["step"] == steps
    assert (run / f"ckpt-{steps}.weights.h5").exists()
    assert list((run / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run / "log.csv").read_text().count("\n") == steps + 1
    results = json.loads((run / "results.json").read_text())
    assert results["step"] == steps and np.isfinite(results["test_loss"])
    return config, results


def test_maze_run_evaluates_rollouts_and_exports_transfer(tmp_path, capsys):
    run, export = tmp_path / "maze", tmp_path / "export"
    assert cli.main(TRAIN + ["--tasks", "maze", "--encoder", "context",
                             "--width", "4", "--strategy", "mirrored",
                             "--out", str(run)]) == 0
    config, results = assert_a_complete_run(run, "maze")
    assert (config["width"], config["k"], config["strategy"]) == (
        4, None, "mirrored")
    assert results["width"] == 4 and 0 <= results["test_accuracy"] <= 1
    assert -1 <= results["test_reward_mean"] <= 0   # normalized distance
    meta, _ = run_weights(run)
    assert meta.encoder.k == 2   # N / 2, the task's dimension

    assert cli.main(["export", str(run), "--path", str(export)]) == 0
    capsys.readouterr()
    tasks = maze.tasks(3, width=4, query_size=5, seed=9)
    expected = meta.transfer(tasks["support_x"], tasks["support_y"],
                             tasks["query_x"])
    served = tf.saved_model.load(str(export)).signatures["transfer"](
        **{k: tf.constant(tasks[k]) for k in ("support_x", "support_y",
                                             "query_x")})["predictions"]
    assert served.shape == (3, 5, len(maze.ACTIONS))
    np.testing.assert_allclose(served.numpy(), expected, rtol=1e-5,
                               atol=1e-6)


@pytest.mark.skipif(importlib.util.find_spec("mujoco") is None,
                    reason="needs the mujoco extra")
def test_pendulum_run_reports_the_current_state_reference(tmp_path, capsys):
    run = tmp_path / "pendulum"
    assert cli.main(TRAIN + ["--tasks", "pendulum", "--encoder", "mean",
                             "--sigma", "0.5", "--train-tasks", "2",
                             "--out", str(run)]) == 0
    capsys.readouterr()
    config, results = assert_a_complete_run(run, "pendulum")
    assert (config["sigma"], config["train_tasks"]) == (0.5, 2)
    assert results["test_query_mse_mean"] == pytest.approx(
        results["test_loss"], rel=1e-5)
    assert results["test_current_state_mse"] > 0


@pytest.mark.parametrize("options, message", [
    ({"tasks": "pendulum", "width": "6"},
     "width apply to maze tasks only, not to pendulum"),
    ({"tasks": "maze", "sigma": "1"},
     "sigma apply to cos-sin or pendulum tasks only, not to maze"),
    ({"tasks": "cos-sin", "train_tasks": "5"},
     "train_tasks apply to pendulum tasks only, not to cos-sin"),
    ({"tasks": "maze", "width": "7"}, "width must be an even number >= 2"),
    ({"tasks": "maze", "width": "0"}, "width must be a"),
    ({"tasks": "mazes"}, "unknown task family 'mazes'"),
    ({"tasks": "maze", "inner_steps": "3"},
     "inner_steps do(es) not apply to transfer on maze"),
])
def test_bad_family_options_name_the_problem(options, message):
    with pytest.raises(UsageError) as err:
        schema.resolve({}, {"method": "transfer", "encoder": "linear",
                            **options})
    assert message in str(err.value)


def test_family_defaults_and_a_missing_mujoco(monkeypatch, tmp_path, capsys):
    config = schema.resolve({}, {"method": "transfer", "encoder": "max",
                                 "tasks": "maze"})
    assert (config["width"], config["train_tasks"]) == (6, None)
    config = schema.resolve({"width": None}, {"method": "transfer",
                                              "encoder": "max",
                                              "tasks": "maze"})
    assert config["width"] == 6   # null: the family's default
    assert schema.resolve(config, {}) == config   # a stored config.json
    config = schema.resolve({}, {"method": "transfer", "encoder": "max",
                                 "tasks": "pendulum"})
    assert (config["train_tasks"], config["meta_optimizer"]) == (100, "adam")

    from tfmeta.tasks import pendulum

    def missing():
        raise ImportError(pendulum.EXTRA_HINT)

    monkeypatch.setattr(pendulum, "require_mujoco", missing)
    run = tmp_path / "run"
    assert cli.main(TRAIN + ["--tasks", "pendulum", "--encoder", "max",
                             "--out", str(run)]) == cli.EXIT_BAD_INPUT
    assert "pip install 'tfmeta[mujoco]'" in capsys.readouterr().err
    assert not run.exists()
