"""The documentation site builds in strict mode, the tutorials run, and
every public name is documented.

* ``test_site_builds_strict_with_tutorials``: one process runs the three
  tutorials (``docs/tutorials/*.py``) at ``TFMETA_TUTORIAL_BUDGET=tiny``,
  writing their figures to a temporary folder, then builds the site with
  ``mkdocs build --strict`` into another (a broken link, cross-reference or
  API block fails it), as ``make docs`` does with the full budget.
* ``test_public_names_are_documented``: every public name (the
  ``__all__`` of ``tfmeta`` and its subpackages, and the public functions,
  classes and constants of the modules they export) has a docstring, and
  each argument of its signature (the constructor's for a class; a
  subclass without its own constructor inherits its base's documentation)
  is named in the Google-style ``Args`` section mkdocstrings renders.
  Read statically with griffe, as mkdocstrings does: no TensorFlow import.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.py"))

DRIVER = """
import runpy, sys
from mkdocs.commands.build import build
from mkdocs.config import load_config

for script in sys.argv[3:]:
    print("tutorial", script, flush=True)
    runpy.run_path(script, run_name="__main__")
config = load_config(sys.argv[1], strict=True, site_dir=sys.argv[2])
config.plugins.on_startup(command="build", dirty=False)
try:
    build(config)
finally:
    config.plugins.on_shutdown()
"""


def test_site_builds_strict_with_tutorials(tmp_path):
    out, site = tmp_path / "tutorials", tmp_path / "site"
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               NO_MKDOCS_2_WARNING="1", TFMETA_TUTORIAL_BUDGET="tiny",
               TFMETA_TUTORIAL_OUT=str(out), MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(ROOT / "mkdocs.yml"), str(site)]
        + [str(t) for t in TUTORIALS], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])

    assert len(TUTORIALS) == 3
    for figure in ["sine_leap_reptile.png", "warpgrad_field.png",
                   "export_and_serve.png"]:
        assert (out / figure).stat().st_size > 1000, figure
        assert (site / "tutorials" / "figures" / figure).is_file(), figure
    for script in TUTORIALS:
        page = (site / "tutorials" / script.stem / "index.html").read_text()
        assert "figures/" in page and "<code" in page, script.stem
        notebook = json.loads(
            (site / "tutorials" / f"{script.stem}.ipynb").read_text())
        kinds = {cell["cell_type"] for cell in notebook["cells"]}
        assert kinds == {"markdown", "code"}, kinds
    # the generated CLI reference has every subcommand's options
    cli = (site / "cli" / "index.html").read_text()
    for text in ["tfmeta train", "--inner-steps", "--resume-from",
                 "tfmeta export", "--overwrite", "tfmeta evaluate"]:
        assert text in cli, text
    # the API blocks rendered the docstrings
    leap = (site / "methods" / "leap" / "index.html").read_text()
    assert "loss_in_manifold" in leap and "pull_forward_increment" in leap


def test_strict_build_fails_on_a_broken_cross_reference(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "index.md").write_text(
        "# Page\n\nSee [Leap][tfmeta.NoSuchName].\n\n::: tfmeta.Reptile\n")
    (tmp_path / "mkdocs.yml").write_text(
        "site_name: t\nplugins:\n  - autorefs\n  - mkdocstrings:\n"
        "      handlers:\n        python:\n"
        f"          paths: [{json.dumps(str(ROOT))}]\n")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict"], cwd=tmp_path,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"), capture_output=True,
        text=True, timeout=300)
    assert done.returncode != 0
    assert "tfmeta.NoSuchName" in done.stderr, done.stderr[-2000:]


# ------------------------------------------------------------ docstrings
def load_package():
    griffe = pytest.importorskip("griffe")
    return griffe.load("tfmeta", search_paths=[str(ROOT)], resolve_aliases=True,
                       resolve_external=False, docstring_parser="google",
                       docstring_options={"warn_missing_types": False})


def public_members(module):
    """``(name, object)`` of a module's public names: its ``__all__``, or
    else the functions, classes and UPPER_CASE constants it defines."""
    if module.exports is not None:
        return [(str(n), module[str(n)]) for n in module.exports]
    return [(n, m) for n, m in module.members.items()
            if not n.startswith("_") and not m.is_alias
            and (m.is_class or m.is_function
                 or (m.is_attribute and n.isupper()))]


def public_names(package):
    """``{path: object}`` of every public name reachable from ``tfmeta``'s
    ``__all__`` (modules recursively) and ``tfmeta.rl``'s."""
    found, seen = {}, set()

    def walk(module):
        seen.add(module.path)
        for _, member in public_members(module):
            target = member.final_target if member.is_alias else member
            if target.is_module:
                if target.path.startswith("tfmeta") and target.path not in seen:
                    found[target.path] = target
                    walk(target)
            else:
                found.setdefault(target.path, target)

    for module in (package, package["rl"]):
        found[module.path] = module
        walk(module)
    return found


def documented_arguments(docstring, attributes=False):
    """Names in the docstring's Args (and, for a dataclass-like class whose
    fields are its arguments, Attributes) sections."""
    from griffe import DocstringSectionKind as Kind
    if docstring is None:
        return set()
    kinds = {Kind.parameters, Kind.other_parameters}
    if attributes:
        kinds.add(Kind.attributes)
    return {p.name.lstrip("*") for s in docstring.parsed if s.kind in kinds
            for p in s.value}


def constructor_docs(cls):
    """The Args of ``cls`` and its ``__init__``; a class without its own
    ``__init__`` takes its bases' (its signature is theirs)."""
    names = documented_arguments(cls.docstring, attributes=True)
    init = cls.members.get("__init__")
    if init is not None and not init.is_alias:
        return names | documented_arguments(init.docstring)
    for base in cls.resolved_bases:
        names |= constructor_docs(base)
    return names


def runtime_docstring(obj):
    """Whether the module sets ``<name>.__doc__ = ...`` (namedtuples)."""
    if obj.is_attribute and obj.parent is not None and obj.parent.filepath:
        source = pathlib.Path(obj.parent.filepath).read_text()
        return f"\n{obj.name}.__doc__ = " in source
    return False


def problems(obj):
    if not obj.docstring or not obj.docstring.value.strip():
        return None if runtime_docstring(obj) else "no docstring"
    if obj.is_class:
        documented = constructor_docs(obj)
    elif obj.is_function:
        documented = documented_arguments(obj.docstring)
    else:
        return None
    missing = [p.name for p in obj.parameters
               if p.name not in ("self", "cls") and p.name not in documented]
    return f"arguments not in Args: {missing}" if missing else None


def test_public_names_are_documented():
    names = public_names(load_package())
    assert {"tfmeta.leap.Leap", "tfmeta.warpgrad.method.WarpGrad",
            "tfmeta.tasks.sine.dataset", "tfmeta.rl.a2c.A2C"} <= set(names)
    bad = {path: problems(obj) for path, obj in names.items()}
    bad = {path: p for path, p in bad.items() if p}
    assert not bad, "\n".join(f"{k}: {v}" for k, v in sorted(bad.items()))


#: Classes whose public methods users and method writers call: each such
#: method names its arguments too (an override without a docstring
#: inherits its base's). Keras's own API (call, build, get_config,
#: train_step, ...) is documented by Keras.
METHOD_CLASSES = ["tfmeta.meta_learner.MetaModel",
                  "tfmeta.meta_learner.MetaLearner",
                  "tfmeta.warpgrad.method.WarpGrad",
                  "tfmeta.transfer.meta_transfer.MetaTransfer",
                  "tfmeta.rl.a2c.A2C", "tfmeta.rl.leap.RLLeap",
                  "tfmeta.inner_loop.Stepper",
                  "tfmeta.inner_optimizers.InnerOptimizer"]
KERAS_API = {"call", "build", "get_config", "from_config", "train_step",
             "test_step", "make_train_function", "make_test_function",
             "compute_loss", "compute_metrics", "compute_output_shape"}


def test_public_methods_are_documented():
    names = public_names(load_package())
    bad = {}
    for path in METHOD_CLASSES:
        cls = names[path]
        for name, member in cls.members.items():
            if (name.startswith("_") or name in KERAS_API or member.is_alias
                    or not member.is_function):
                continue
            problem = problems(member)
            bases = [base.members[name] for base in cls.mro()
                     if name in base.members]
            if problem and bases and not problems(bases[0]):
                problem = None   # an override: the base documents it
            if problem:
                bad[f"{path}.{name}"] = problem
    assert not bad, "\n".join(f"{k}: {v}" for k, v in sorted(bad.items()))


def test_the_check_catches_a_missing_argument(tmp_path):
    griffe = pytest.importorskip("griffe")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(
        'def f(a, b=1):\n    """Adds.\n\n    Args:\n      a: a number.\n    """\n'
        "def g(a):\n    return a\n")
    module = griffe.load("pkg", search_paths=[str(tmp_path)],
                         docstring_parser="google",
                         docstring_options={"warn_missing_types": False})
    assert problems(module["f"]) == "arguments not in Args: ['b']"
    assert problems(module["g"]) == "no docstring"


@pytest.mark.parametrize("script", TUTORIALS, ids=lambda p: p.stem)
def test_tutorials_pair_with_notebooks(script):
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(script)
    again = jupytext.reads(jupytext.writes(notebook, fmt="ipynb"), fmt="ipynb")
    assert [c.source for c in again.cells] == [c.source for c in notebook.cells]
    assert notebook.metadata["jupytext"]["formats"] == "py:percent,ipynb"
