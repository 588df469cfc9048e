"""experiments/multicv.py: the AUC, the table and (slow) a tiny run."""

import importlib.util
import json
import pathlib

import pytest

from tfmeta.tasks import multicv

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location(
        "multicv_experiment", ROOT / "experiments" / "multicv.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_auc_is_the_mean_training_error_over_the_budget():
    m = load_script()
    assert m.auc([0, 10], [1.0, 0.0], 10) == pytest.approx(50.0)
    # stopped early at step 10 of 20 with 0.2: held for the rest
    assert m.auc([0, 10], [0.6, 0.2], 20) == pytest.approx(
        100 * (10 * 0.4 + 10 * 0.2) / 20)


def test_table_counts_leap_wins_and_lists_missing_sets(tmp_path):
    m = load_script()
    row = lambda a: {"test": 1.0, "train": 0.5, "auc": a, "steps": 5,  # noqa
                     "stopped_early": False, "seconds": 1.0}
    results = {"mnist": {"leap": row(1.0), "scratch": row(2.0)},
               "cifar10": {"leap": row(3.0), "scratch": row(2.0)}}
    text = m.write_table(results, tmp_path, ["mnist", "cifar10"])
    assert "| mnist | Leap | 1.0 (0.7) | 0.5 (0.1) | 1.0 (0.6) |" in text
    assert "on 1 of 2 held-out sets (mnist)" in text
    assert "Not available (not run): facescrub, cifar100, notmnist" in text


@pytest.mark.slow
@pytest.mark.skipif(not {"mnist", "notmnist"} <= set(multicv.available()),
                    reason="MNIST/notMNIST not found")
def test_tiny_run_end_to_end(tmp_path):
    m = load_script()
    assert m.main(["--budget", "tiny", "--datasets", "notmnist,mnist",
                   "--out", str(tmp_path)]) == 0
    stored = json.loads((tmp_path / "results.json").read_text())
    assert set(stored["results"]) == {"notmnist", "mnist"}
    assert set(stored["results"]["mnist"]) == set(m.METHODS)
    assert (tmp_path / "curves.png").stat().st_size > 0
