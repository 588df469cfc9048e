"""MkDocs hooks (``mkdocs.yml`` names this file; it is not a page).

* ``cli.md``: the line ``<!-- cli-reference -->`` becomes the ``--help``
  text of ``tfmeta`` and each subcommand, generated from the argparse
  parser of ``tfmeta.cli`` at build time, so the page cannot drift.
* Tutorials: each ``docs/tutorials/*.py`` (jupytext percent format) becomes
  a page ``tutorials/<name>.md`` (its markdown cells as text, its code
  cells as code) and a notebook ``tutorials/<name>.ipynb``, both generated
  here and never committed; the figures the tutorials wrote when they ran
  (``$TFMETA_TUTORIAL_OUT``, default ``build/tutorials``; ``make docs`` runs
  them first) are added as ``tutorials/figures/<file>``.
"""

import os
import pathlib
import re

from mkdocs.structure.files import File

CLI_MARKER = "<!-- cli-reference -->"
TUTORIALS = "tutorials"


def tutorial_output():
    """Where the tutorials wrote their figures."""
    return pathlib.Path(os.environ.get("TFMETA_TUTORIAL_OUT",
                                       "build/tutorials"))


def cli_reference():
    """Markdown: ``tfmeta --help`` and every subcommand's ``--help``."""
    import argparse
    os.environ["COLUMNS"] = "88"   # stable wrapping of argparse's help
    from tfmeta import cli
    parser = cli.parser()
    sub = next(a for a in parser._actions
               if isinstance(a, argparse._SubParsersAction))
    parts = [("tfmeta", parser)] + [(f"tfmeta {name}", p)
                                    for name, p in sub.choices.items()]
    out = []
    for title, p in parts:
        out += [f"### `{title}`", "", "```text", p.format_help().rstrip(),
                "```", ""]
    return "\n".join(out)


def notebook_markdown(notebook, name):
    """A page from a tutorial notebook: markdown cells as they are, code
    cells as Python blocks, with links to the script and the notebook."""
    links = [f"[Download the script]({name}.py) · "
             f"[download the notebook]({name}.ipynb) "
             f"(`jupytext --sync` keeps them paired)", ""]
    lines = []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            lines += [cell.source, ""]
        elif cell.cell_type == "code" and cell.source.strip():
            lines += ["```python", cell.source, "```", ""]
        if len(lines) == 2 and links:   # after the title cell
            lines += links
            links = []
    return "\n".join(lines + links)


def on_files(files, config):
    import jupytext
    docs = pathlib.Path(config["docs_dir"])
    for script in sorted((docs / TUTORIALS).glob("*.py")):
        notebook = jupytext.read(script)
        name = script.stem
        files.append(File.generated(
            config, f"{TUTORIALS}/{name}.md",
            content=notebook_markdown(notebook, name)))
        files.append(File.generated(
            config, f"{TUTORIALS}/{name}.ipynb",
            content=jupytext.writes(notebook, fmt="ipynb")))
    out = tutorial_output()
    for figure in sorted(out.glob("*.png")) if out.is_dir() else []:
        files.append(File.generated(
            config, f"{TUTORIALS}/figures/{figure.name}",
            abs_src_path=str(figure.resolve())))
    return files


def on_page_markdown(markdown, page, config, files):
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if page.file.src_uri.startswith(f"{TUTORIALS}/"):
        missing = [m for m in re.findall(r"\]\(figures/([^)]+)\)", markdown)
                   if not (tutorial_output() / m).is_file()]
        if missing:
            raise RuntimeError(
                f"{page.file.src_uri}: figures {missing} are not in "
                f"{tutorial_output()}: run the tutorials first (make docs "
                "does, with TFMETA_TUTORIAL_OUT=build/tutorials).")
    return markdown
