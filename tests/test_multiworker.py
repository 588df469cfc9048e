"""MultiWorkerMirroredStrategy: two real worker processes on localhost
(``TF_CONFIG`` each, CPU only, started by experiments/launch_multiworker.py)
run meta-steps that equal one device's."""

import importlib.util
import os
import pathlib
import pickle
import sys

import pytest

import distributed_cases as cases

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import launch_multiworker as launcher  # noqa: E402


def run_workers(tmp_path, command, workers=2, timeout=600):
    """Runs ``command`` (``{index}``: the worker's index) as ``workers``
    local worker processes; returns their exit statuses and the tail of
    their logs (``tmp_path/worker<i>.log``)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    paths = [tmp_path / f"worker{i}.log" for i in range(workers)]
    logs = [open(p, "w") for p in paths]
    try:
        processes = []
        hosts = [f"localhost:{p}" for p in launcher.free_ports(workers)]
        for i, log in enumerate(logs):
            processes += launcher.start(
                command, hosts=hosts, index=i, env=env, cwd=ROOT,
                stdout=log, stderr=log)[1]
        codes = launcher.wait(processes, timeout=timeout)
    finally:
        for f in logs:
            f.close()
    return codes, "\n".join(p.read_text()[-2000:] for p in paths)


def check_cases(tmp_path, names):
    """Every case of ``names`` in one start of two workers, against one
    device (this process)."""
    command = [sys.executable, "tests/distributed_cases.py", "--strategy",
               "multiworker", "--cases", ",".join(names), "--out",
               str(tmp_path / "worker{index}.pkl")]
    codes, logs = run_workers(tmp_path, command)
    assert codes == [0, 0], logs
    results = []
    for index in range(2):
        with open(tmp_path / f"worker{index}.pkl", "rb") as f:
            results.append(pickle.load(f))
    for name in names:
        expected = cases.run(name)
        for index, result in enumerate(results):
            assert "error" not in result[name], (index, name, result[name])
            cases.compare(expected, result[name], f"worker {index}: {name}")
    return results


def test_two_worker_processes_match_one_device(tmp_path):
    """Leap, MAML (3 tasks over the 2 workers: 2 + 1) and online WarpGrad:
    weights and History after 3 meta-steps, to 1e-5, on both workers; and,
    with the rl extra, RLLeap on 3 maze tasks: the same encoder as one
    process after 2 meta-steps, each worker having trained its share."""
    rl = importlib.util.find_spec("gymnasium") is not None
    results = check_cases(tmp_path, cases.QUICK + (("rl_leap",) if rl else ()))
    if rl:
        one = [sorted(t) for t in cases.run("rl_leap")["trained"]]
        shares = [r["rl_leap"]["trained"] for r in results]
        for step, tasks in enumerate(one):
            assert [len(s[step]) for s in shares] == [2, 1]
            assert sorted(shares[0][step] + shares[1][step]) == tasks


@pytest.mark.slow
def test_every_method_over_two_worker_processes(tmp_path):
    """Every case of ``distributed_cases.CASES`` (~2-4 min)."""
    check_cases(tmp_path, sorted(cases.CASES))
