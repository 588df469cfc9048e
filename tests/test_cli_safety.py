"""The command line never deletes or mixes what it did not write: output
folders checked before any work, one process per run folder, Ctrl-C with
a resume hint, one-line usage errors (exit 2), exports that replace only
exports, resuming from an older checkpoint when the latest is damaged."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import tfmeta
from tfmeta import cli
from tfmeta.errors import UsageError

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = ["--steps", "4", "--checkpoint-every", "2", "--meta-batch", "2",
         "--inner-steps", "2", "--eval-steps", "2", "--test-tasks", "4",
         "--no-deterministic"]


def tfmeta_process(args, quiet=True, **kwargs):
    """``python -m tfmeta ARGS`` as a real process (Popen)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if quiet:
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    else:
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.Popen([sys.executable, "-m", "tfmeta", *args], env=env,
                            text=True, **kwargs)


def run_tfmeta(args, quiet=True):
    process = tfmeta_process(args, quiet, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def one_error_line(capsys, command="train"):
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tfmeta {command}: error: "), err
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("safety") / "run"
    assert cli.main(["train", "reptile", *SMALL, "--out", str(path)]) == 0
    return path


# ---------------------------------------------------------- output folders
@pytest.mark.parametrize("out,message", [
    ("", "--out is empty"),
    (".", "is not empty (file.txt) and holds no tfmeta run"),
    ("/proc/x", "cannot write in /proc"),
    ("{tmp}/file.txt/run", "is not a directory"),
])
def test_bad_out_is_refused_before_any_work(tmp_path, monkeypatch, capsys,
                                            out, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file.txt").write_text("keep me")
    code = cli.main(["train", "reptile", *SMALL,
                     "--out", out.format(tmp=tmp_path)])
    assert code == cli.EXIT_BAD_INPUT
    assert message in one_error_line(capsys)
    assert os.listdir(tmp_path) == ["file.txt"]  # nothing trained into "."
    assert (tmp_path / "file.txt").read_text() == "keep me"


@pytest.mark.parametrize("args,message", [
    (["--seed", "-1"], "seed must be an integer from 0 to 4294967295, got -1"),
    (["--seed", "4294967296"], "seed must be an integer from 0 to 4294967295"),
    (["--inner-batch-size", "11"],
     "inner_batch_size (11) is larger than the support split of a sine task "
     "(10 examples)"),
    (["--anneal=maybe"], "ignored explicit argument 'maybe'"),
    (["--steps", "ten"], "steps must be a positive integer, got 'ten'"),
    (["--resume-from", "x"], "--resume-from must be a positive integer"),
])
def test_usage_errors_are_one_line(tmp_path, capsys, args, message):
    try:
        code = cli.main(["train", "reptile", *SMALL, *args,
                         "--out", str(tmp_path / "r")])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("name,text,message", [
    ("c.json", "[\"leap\"]", "must hold a mapping of options, got list"),
    ("c.yaml", "method: [leap]\n", "unknown method ['leap']"),
    ("c.yaml", "anneal: 'maybe'\nmethod: leap\n", "anneal must be true or false"),
    ("c.yaml", "method: leap\ndata_dir: 5\n", "data_dir must be a path"),
])
def test_bad_config_files_are_one_line(tmp_path, capsys, name, text, message):
    (tmp_path / name).write_text(text)
    code = cli.main(["train", "--config", str(tmp_path / name),
                     "--out", str(tmp_path / "r")])
    assert code == cli.EXIT_BAD_INPUT
    assert message in one_error_line(capsys)


def test_evaluate_a_file_does_not_talk_about_out(tmp_path, capsys):
    (tmp_path / "f.txt").write_text("x")
    assert cli.main(["evaluate", str(tmp_path / "f.txt")]) == 2
    err = one_error_line(capsys, "evaluate")
    assert "is not a directory" in err and "--out" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"tfmeta {tfmeta.__version__}"


# ------------------------------------------------------------------ export
def test_export_never_deletes_what_it_did_not_write(run, tmp_path, monkeypatch,
                                                    capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "paper.tex").write_text("keep me")
    code = cli.main(["export", str(run), "--path", ".", "--overwrite"])
    assert code == 2
    err = one_error_line(capsys, "export")
    assert "is not a tfmeta export" in err and str(tmp_path) in err
    assert sorted(os.listdir(tmp_path)) == ["paper.tex"]
    assert (tmp_path / "paper.tex").read_text() == "keep me"
    assert cli.main(["export", str(run), "--path", "/proc/xx"]) == 2
    assert "cannot write the export to /proc/xx" in one_error_line(capsys,
                                                                   "export")


# --------------------------------------------------- damaged checkpoint
def test_damaged_latest_checkpoint_offers_the_older_one(run, tmp_path, capsys):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    latest = copy / "ckpt-4.weights.h5"
    latest.write_bytes(latest.read_bytes()[:500])
    args = ["train", "reptile", *SMALL, "--out", str(copy)]
    assert cli.main(args) == 2
    err = one_error_line(capsys)
    assert "ckpt-4.weights.h5 is unreadable or corrupt" in err
    assert "An older checkpoint is there (ckpt-2.weights.h5, meta-step 2)" in err
    assert "--resume-from 2" in err
    (copy / "results.json").unlink()
    assert cli.main(args + ["--resume-from", "2"]) == 0
    capsys.readouterr()
    assert json.loads((copy / "checkpoint.json").read_text())["step"] == 4
    rows = (copy / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]  # no duplicates
    assert json.loads((copy / "results.json").read_text())["step"] == 4
    assert cli.main(args + ["--resume-from", "3"]) == 2
    assert "has no checkpoint at meta-step 3" in capsys.readouterr().err


# ----------------------------------------------------- one process per run
# A process holding a run folder as RunDir.lock does (flock on RUN/.lock, its
# pid in the file), without importing TensorFlow.
HOLD_LOCK = textwrap.dedent("""
    import fcntl, os, pathlib, sys, time
    out = pathlib.Path(sys.argv[1])
    out.mkdir()
    f = open(out / ".lock", "a+")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    f.write(str(os.getpid()))
    f.flush()
    print("locked", flush=True)
    time.sleep(600)
""")


def test_a_run_folder_is_owned_by_one_process(tmp_path):
    """A second command on a locked run folder is refused naming the folder
    and the holder's pid, and writes nothing; a SIGKILLed holder does not
    leave the lock stuck."""
    out = tmp_path / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)],
                              text=True, stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "locked"
        code, _, err = run_tfmeta(["train", "reptile", *SMALL, "--out", str(out)])
        assert code == 2, err
        assert f"{out} is in use by another tfmeta process (pid {holder.pid})" \
            in err
        assert sorted(os.listdir(out)) == [".lock"]  # no config, no log
        with pytest.raises(UsageError, match=f"pid {holder.pid}"):
            cli.RunDir(out).lock()
    finally:
        holder.kill()
        holder.wait()
    run = cli.RunDir(out)
    run.lock()  # the kernel released the killed holder's lock
    assert (out / ".lock").read_text() == str(os.getpid())
    run.unlock()
    assert (out / ".lock").read_text() == ""  # released: names no process


# ------------------------------------------------------------------ Ctrl-C
def test_ctrl_c_exits_130_and_says_where_to_resume(tmp_path):
    out = tmp_path / "r"
    args = ["train", "reptile", *SMALL, "--steps", "100000", "--out", str(out)]
    with open(tmp_path / "stderr", "w+") as err:
        # The child gets SIGINT's default disposition, as a command typed in
        # a terminal does, even where this test runs with SIGINT ignored
        # (a job started in the background with nohup ... &): Python then
        # installs no KeyboardInterrupt handler, and tfmeta (rightly)
        # leaves an ignored SIGINT ignored.
        process = tfmeta_process(
            args, quiet=False, stdout=subprocess.DEVNULL, stderr=err,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            for _ in range(1200):  # a checkpoint exists: it is training
                if (out / "checkpoint.json").exists() or process.poll() is not None:
                    break
                time.sleep(0.1)
            process.send_signal(signal.SIGINT)
            code = process.wait(timeout=120)
        finally:
            process.kill()
        err.seek(0)
        text = err.read()
    step = json.loads((out / "checkpoint.json").read_text())["step"]
    assert code == cli.EXIT_INTERRUPTED, text
    assert "Traceback" not in text
    assert text.strip().splitlines()[-1] == (
        f"tfmeta train: interrupted. {out} keeps its checkpoint at meta-step "
        f"{step}: run the same command again to resume from there.")
    assert "I0000" not in text and "oneDNN" not in text  # start-up lines quiet
    assert (out / ".lock").read_text() == ""


# ------------------------------------------- caches: only remove what we wrote
def test_a_failed_cache_write_removes_only_its_temporary_file(tmp_path,
                                                              monkeypatch):
    import numpy as np

    from tfmeta.tasks import omniglot
    data = tmp_path / "data" / "omniglot"
    data.mkdir(parents=True)
    for name in ("images_background.zip", "images_evaluation.zip"):
        (data / name).write_bytes(b"stand-in archive")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "notes.npz.tmp").write_text("the user's, not ours")
    monkeypatch.setenv("TFMETA_CACHE", str(cache))
    decoded = (np.zeros((2, 20, 28, 28), "uint8"), np.zeros(2, "int32"),
               np.zeros(2, "int32"))
    monkeypatch.setattr(omniglot, "decode_archives", lambda paths: decoded)

    def disk_full(f, **arrays):
        f.write(b"half an npz")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(omniglot.np, "savez", disk_full)
    images, _, _ = omniglot.load_raw(tmp_path / "data")
    assert images.shape == (2, 20, 28, 28)   # an unwritable cache costs speed
    assert sorted(os.listdir(cache)) == ["notes.npz.tmp"]
    assert (cache / "notes.npz.tmp").read_text() == "the user's, not ours"


def test_two_commands_started_together_do_not_mix_a_run(tmp_path):
    """The issue's case: the same ``train`` twice at once. One trains; the
    other is refused (exit 2, naming the folder) or, if it starts after the
    first finished, finds the run done. Never a traceback, never a log.csv
    with two headers or repeated intervals."""
    out = tmp_path / "r"
    args = ["train", "reptile", *SMALL, "--out", str(out)]
    processes = [tfmeta_process(args, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for _ in range(2)]
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=300)
        results.append((process.returncode, stdout, stderr))
    codes = sorted(code for code, _, _ in results)
    assert codes in ([0, 0], [0, 2]), results
    for code, _, err in results:
        assert "Traceback" not in err
        if code == 2:
            assert f"{out} is in use by another tfmeta process (pid " in err
    rows = (out / "log.csv").read_text().splitlines()
    assert rows[0].startswith("epoch") and len(rows) == 1 + 2
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]


def test_loss_plot_is_in_meta_steps(tmp_path, monkeypatch):
    import matplotlib.figure
    (tmp_path / "config.json").write_text('{"checkpoint_every": 10}')
    (tmp_path / "log.csv").write_text(
        "epoch,loss,val_loss\n0,5.0,3.0\n1,4.0,\n2,3.5,2.5\n")
    figures = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *a, **k: figures.append(fig))
    cli._plot(cli.RunDir(tmp_path))
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "meta-step" and ax.get_ylabel() == "loss"
    train, held_out = ax.lines
    assert list(train.get_xdata()) == [10, 20, 30]
    assert list(held_out.get_xdata()) == [10, 30]  # evaluated intervals only
