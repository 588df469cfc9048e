"""The code in README.md and docs/**/*.md runs as written.

A fenced ``python`` block preceded by the line ``<!-- runnable -->`` is run
by this test, each block in a fresh namespace (so it must hold its own
imports), all blocks in one process in a temporary directory. The budget
fixture: ``keras.Model.fit`` is capped at 1 epoch of at most 2 steps
(``DOCS_MAX_STEPS``), so examples show real budgets and still run in seconds.
Blocks without the marker (e.g. ones that need the Omniglot archives) are
not run.
"""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
MARKER = "<!-- runnable -->"
DOCS_MAX_STEPS = 2

PRELUDE = f"""
import json, sys, traceback
import keras

_fit = keras.Model.fit
def fit(self, *args, **kwargs):  # the budget fixture
    kwargs["epochs"] = 1
    kwargs["steps_per_epoch"] = min(kwargs.get("steps_per_epoch") or
                                    {DOCS_MAX_STEPS}, {DOCS_MAX_STEPS})
    kwargs.setdefault("verbose", 0)
    return _fit(self, *args, **kwargs)
keras.Model.fit = fit

failures = []
for name, code in json.load(open(sys.argv[1])):
    try:
        exec(compile(code, name, "exec"), {{"__name__": "__main__"}})
    except Exception:
        failures.append((name, traceback.format_exc()))
json.dump(failures, open(sys.argv[2], "w"))
"""


def runnable_blocks(path):
    """``(name, code)`` of the marked ``python`` blocks of a Markdown file."""
    lines = path.read_text().splitlines()
    blocks = []
    for i, line in enumerate(lines):
        if line.strip() == MARKER:
            assert lines[i + 1].strip() == "```python", (
                f"{path.name}:{i + 1}: {MARKER} must come right before a "
                "```python block")
            end = lines.index("```", i + 2)
            blocks.append((f"{path.name}:{i + 3}", "\n".join(lines[i + 2:end])))
    return blocks


def all_blocks():
    files = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))
    return [block for path in files for block in runnable_blocks(path)]


def test_readme_examples_are_marked_runnable():
    names = [name for name, _ in runnable_blocks(ROOT / "README.md")]
    assert len(names) >= 2, names  # "Use" and "WarpGrad"
    assert re.search(r"import .*tensorflow as tf", runnable_blocks(
        ROOT / "README.md")[0][1])


def test_marked_blocks_run(tmp_path):
    blocks = all_blocks()
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    (tmp_path / "prelude.py").write_text(PRELUDE)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run(
        [sys.executable, str(tmp_path / "prelude.py"), str(tmp_path / "blocks.json"),
         str(tmp_path / "failures.json")], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert not failures, "\n".join(f"{name}:\n{tb}" for name, tb in failures)


@pytest.mark.parametrize("text,count", [
    (f"{MARKER}\n```python\nx = 1\n```\n```python\ny = 2\n```\n", 1),
    ("```python\nx = 1\n```\n", 0),
])
def test_only_marked_blocks_are_collected(tmp_path, text, count):
    path = tmp_path / "page.md"
    path.write_text(text)
    blocks = runnable_blocks(path)
    assert len(blocks) == count
    if count:
        assert blocks[0] == ("page.md:3", "x = 1")
