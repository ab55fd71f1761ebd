"""``registry report``: execute an analysis notebook for one area and write it as HTML.

The notebook's ``parameters`` cell is followed by an injected cell that sets the
parameters (papermill style, without papermill); the kernel is the ``python3`` of this
environment, which reads the database from the same environment as the CLI. The HTML
embeds its images and loads nothing from the internet.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from registry.cli_common import console, reports_errors
from registry.settings import RegistryError, Settings, resolve_database_url

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = ("coverage_audit", "data_quality")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
CELL_TIMEOUT = 600

# the lab template without the scripts it would load from CDNs (require.js, MathJax,
# mermaid, the widget manager): the report's outputs need none of them
OFFLINE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""
REMOTE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script\s*>", re.IGNORECASE
)
REMOTE_LINK = re.compile(r"<link\b[^>]*\bhref\s*=\s*[\"']?(?:https?:)?//[^>]*>", re.IGNORECASE)


def notebook_path(name: str) -> Path:
    """The stored notebook called ``name`` (with or without ``.ipynb``)."""
    stem = name.removesuffix(".ipynb")
    if stem not in NOTEBOOKS:
        raise RegistryError(f"unknown notebook {name!r}: choose one of {', '.join(NOTEBOOKS)}")
    path = (Settings().notebook_dir or NOTEBOOK_DIR) / f"{stem}.ipynb"
    if not path.is_file():
        raise RegistryError(f"notebook {path} not found: set REGISTRY_NOTEBOOK_DIR")
    return path


def inject_parameters(nb: Any, parameters: dict[str, Any]) -> None:
    """Put a cell setting ``parameters`` right after the ``parameters``-tagged cell
    (replacing an earlier injected cell), or first when no cell is tagged."""
    import nbformat

    source = "# Parameters\n" + "".join(f"{k} = {v!r}\n" for k, v in parameters.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    tagged = [
        i for i, c in enumerate(cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])
    ]
    at = tagged[0] + 1 if tagged else 0
    nb.cells = [*cells[:at], cell, *cells[at:]]


class NotebookFailed(RegistryError):
    """A cell raised: the message names the error; ``nb`` holds the outputs so far."""

    def __init__(self, message: str, nb: Any) -> None:
        super().__init__(message)
        self.nb = nb


def execute_notebook(path: Path, parameters: dict[str, Any], workdir: Path) -> Any:
    """Run the notebook with ``parameters`` in ``workdir``; raise NotebookFailed naming the
    failing cell's error (not the kernel's traceback) when a cell fails."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    inject_parameters(nb, parameters)
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(workdir)}},
    )
    try:
        client.execute()
    except CellExecutionError as exc:
        raise NotebookFailed(
            f"notebook {path.stem} failed: {exc.ename}: {exc.evalue}", nb
        ) from None
    except DeadKernelError as exc:
        raise NotebookFailed(f"notebook {path.stem}: the kernel died ({exc})", nb) from None
    return nb


def offline_html(nb: Any, title: str) -> str:
    """The executed notebook as one self-contained HTML page (images embedded, nothing
    remote); refuses to return a page that would still load a remote script or style."""
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab",
        template_file="offline.html.j2",
        extra_loaders=[DictLoader({"offline.html.j2": OFFLINE_TEMPLATE})],
        embed_images=True,
    )
    nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    body = REMOTE_LINK.sub("", REMOTE_SCRIPT.sub("", body))
    if remote_sources(body):
        raise RegistryError("the report would load scripts or styles from the internet")
    return body


def remote_sources(page: str) -> list[str]:
    """Remote ``<script src>`` and ``<link href>`` in ``page``, also inside the escaped
    ``srcdoc`` of iframes (how folium maps are shown)."""
    import html

    found = []
    for text in (page, html.unescape(page)):
        found += REMOTE_SCRIPT.findall(text) + REMOTE_LINK.findall(text)
    return found


@reports_errors
def report_command(
    notebook: Annotated[str, typer.Option(help=f"One of {', '.join(NOTEBOOKS)}.")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")],
    code: Annotated[
        str, typer.Option(help="Area to audit: a district, street or community code prefix.")
    ] = "",
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Count residents at this date (YYYY-MM-DD).")
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(help="Where the notebook writes its files (default: the HTML's folder)."),
    ] = None,
) -> None:
    """Execute an analysis notebook (notebooks/) for an area and write it as offline HTML;
    the notebook also writes its results JSON and work lists next to it."""
    path = notebook_path(notebook)
    if code and not code.isdigit():
        raise RegistryError(f"--code {code!r} is not a code (digits, e.g. 420111)")
    if as_of:
        try:
            dt.date.fromisoformat(as_of)
        except ValueError:
            raise RegistryError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)") from None
    resolve_database_url(Settings())  # no database: say so before starting a kernel
    target_dir = (out_dir or out.parent).resolve()
    target_dir.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    parameters = {"code": code or None, "as_of": as_of, "out_dir": str(target_dir)}
    title = f"{path.stem} {code or 'all'}" + (f" as of {as_of}" if as_of else "")
    try:
        nb = execute_notebook(path, parameters, target_dir)
    except NotebookFailed as exc:
        # the page up to the failing cell, with its traceback, helps whoever reads the log
        out.write_text(offline_html(exc.nb, f"{title} (failed)"), encoding="utf-8")
        raise RegistryError(f"{exc} (the partial report is in {out})") from None
    out.write_text(offline_html(nb, title), encoding="utf-8")
    console.print(f"wrote {out}", highlight=False)
