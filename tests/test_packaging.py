"""The wheel and sdist that ``python -m build`` makes install and run
outside the repository.

The wheel goes into a fresh virtual environment in a temporary folder (not
under the repository), with ``pip install --no-index "<wheel>[cpu]"``. To
keep the test fast and offline, the new environment sees this project's
environment's site-packages through a ``.pth`` file (what
``--system-site-packages`` would give, had the project's interpreter not
been a venv itself: a venv made from a venv gets the base interpreter's
site-packages), so TensorFlow, Keras and the other pinned requirements are
already satisfied and ``--no-index`` proves no download is needed; pip is
the project's own, pointed at the new interpreter with ``--python``.
Then, from a folder outside the repository: ``import tfmeta`` (from the
wheel, not the checkout), the ``tfmeta list`` console script, and the
README's sine quick start (its first runnable block, ``fit`` capped as in
``tests/test_docs.py``).
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

from test_docs import PRELUDE, ROOT, runnable_blocks


def package_files():
    """Every file of the ``tfmeta`` package in the checkout (no caches)."""
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tfmeta").rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts
                  and p.suffix != ".pyc")


def run(cmd, cwd, env=None):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, (cmd, done.stdout[-2000:], done.stderr[-3000:])
    return done.stdout


def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
         str(ROOT)], cwd=ROOT)
    import tfmeta
    wheel = dist / f"tfmeta-{tfmeta.__version__}-py3-none-any.whl"
    sdist = dist / f"tfmeta-{tfmeta.__version__}.tar.gz"
    assert wheel.is_file() and sdist.is_file(), sorted(os.listdir(dist))

    # Everything the package has (modules, subpackages, any data file) is in
    # both, and the console script is declared.
    files = package_files()
    names = set(zipfile.ZipFile(wheel).namelist())
    assert not [f for f in files if f not in names], "missing from the wheel"
    with tarfile.open(sdist) as tar:
        in_sdist = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert not [f for f in files if f not in in_sdist], "missing from the sdist"
    assert {"CHANGELOG.md", "README.md", "setup.cfg"} <= in_sdist
    entry_points = zipfile.ZipFile(wheel).read(
        f"tfmeta-{tfmeta.__version__}.dist-info/entry_points.txt").decode()
    assert "tfmeta = tfmeta.cli:main" in entry_points

    # No PYTHONPATH from here on: the checkout (and the tfmeta.egg-info that
    # building the sdist leaves there) must not be what pip or Python sees.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path,
        env=env)
    python = venv / "bin" / "python"
    site = pathlib.Path(run([str(python), "-c", "import sysconfig; print("
                             "sysconfig.get_paths()['purelib'])"], tmp_path,
                            env).strip())
    (site / "_project_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install",
         "--no-index", "--no-input", f"{wheel}[cpu]"], cwd=tmp_path, env=env)

    outside = tmp_path / "user"
    outside.mkdir()
    env.update(TF_CPP_MIN_LOG_LEVEL="2", PATH=f"{venv / 'bin'}:{env['PATH']}")
    listed = run([str(venv / "bin" / "tfmeta"), "list"], cwd=outside, env=env)
    from tfmeta import registry
    # the methods tfmeta itself registers (other tests may have registered
    # more in this process, e.g. docs/examples/anil.py's "anil_example")
    for name, method in registry.methods().items():
        if method.cls.__module__.startswith("tfmeta."):
            assert re.search(rf"^\s+{name}\s", listed, re.M), (name, listed)
    assert "sine" in listed

    quick_start = runnable_blocks(ROOT / "README.md")[:1]
    check = ("import tfmeta, pathlib, sys\n"
             f"assert pathlib.Path(tfmeta.__file__).is_relative_to({str(site)!r}), "
             "tfmeta.__file__\n")
    (outside / "blocks.json").write_text(json.dumps(
        [("import", check)] + quick_start))
    (outside / "prelude.py").write_text(PRELUDE)
    run([str(python), "prelude.py", "blocks.json", "failures.json"], cwd=outside,
        env=env)
    failures = json.loads((outside / "failures.json").read_text())
    assert not failures, "\n".join(f"{name}:\n{tb}" for name, tb in failures)
