"""The analysis notebooks: stored clean, executed by ``registry report`` over the sample,
their numbers equal to the CLI's, their HTML loading nothing from the internet."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from registry.cli import SAMPLE_BUNDLE
from registry.cli_report import NOTEBOOK_DIR, NOTEBOOKS, inject_parameters, remote_sources

CODE = "420111"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_stored_notebooks_are_clean_and_parameterised(name: str) -> None:
    nb = nbformat.read(NOTEBOOK_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code_cells)
    assert "parameters" in code_cells[0].metadata.get("tags", [])
    assert nb.metadata.kernelspec.name == "python3"


def test_parameters_are_injected_after_the_parameters_cell() -> None:
    nb = nbformat.read(NOTEBOOK_DIR / "coverage_audit.ipynb", as_version=4)
    tagged = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    inject_parameters(nb, {"code": "420106", "as_of": None})
    inject_parameters(nb, {"code": "420111", "as_of": "2024-01-01"})
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and nb.cells[tagged + 1] is injected[0]
    assert "code = '420111'\nas_of = '2024-01-01'\n" in injected[0].source


def test_remote_sources_are_found_also_inside_iframes() -> None:
    assert remote_sources('<script src="https://cdn.example/x.js"></script>')
    assert remote_sources('<link rel="stylesheet" href="http://cdn.example/x.css">')
    assert remote_sources(
        '<iframe srcdoc="&lt;script src=&quot;//cdn.example/x.js&quot;&gt;&lt;/script&gt;">'
    )
    assert not remote_sources('<script>var u = "https://example.org";</script><a href="https://x">')


def test_reports_run_offline_and_match_the_cli(cli, tmp_path: Path) -> None:
    assert cli("load", SAMPLE_BUNDLE).exit_code == 0
    expected = json.loads(cli("rates", "--format", "json", "--code", CODE).stdout)
    assert expected

    audit = tmp_path / "audit" / "report.html"
    result = cli("report", "--notebook", "coverage_audit", "--code", CODE, "--out", audit)
    assert result.exit_code == 0, result.output
    page = audit.read_text(encoding="utf-8")
    assert "leaflet" in page.lower() and "data:image/png;base64" in page
    assert remote_sources(page) == []
    results = json.loads((audit.parent / "results.json").read_text())
    assert results["code"] == CODE
    got = {row["code"]: row for row in results["communities"]}
    assert set(got) == {row["code"] for row in expected}
    for row in expected:
        for field, value in row.items():
            if isinstance(value, float):
                assert got[row["code"]][field] == pytest.approx(value), (row["code"], field)
            else:
                assert got[row["code"]][field] == value, (row["code"], field)
    worklists = audit.parent / "worklists"
    assert {p.stem for p in worklists.glob("*.gpkg")} == set(results["worklists"])
    assert {p.stem for p in worklists.glob("*.csv")} == set(results["worklists"])

    quality = tmp_path / "quality" / "quality.html"
    result = cli("report", "--notebook", "data_quality", "--code", CODE, "--out", quality)
    assert result.exit_code == 0, result.output
    assert remote_sources(quality.read_text(encoding="utf-8")) == []
    findings = json.loads((quality.parent / "quality.json").read_text())
    assert findings["findings"] == sum(c["findings"] for c in findings["checks"])


def test_report_errors_are_messages(cli, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "r.html"
    result = cli("report", "--notebook", "nope", "--code", CODE, "--out", out)
    assert result.exit_code == 1 and "unknown notebook" in result.stderr
    result = cli("report", "--notebook", "coverage_audit", "--code", "42;x", "--out", out)
    assert result.exit_code == 1 and "not a code" in result.stderr
    result = cli("report", "--notebook", "coverage_audit", "--code", "999999", "--out", out)
    assert result.exit_code == 1 and "no community" in result.stderr
    assert "Traceback" not in result.output
    assert "KeyError" not in out.read_text()  # the partial report shows where it stopped
    monkeypatch.delenv("DATABASE_URL")
    monkeypatch.setenv("REGISTRY_HOME", str(tmp_path / "nowhere"))
    elsewhere = tmp_path / "none.html"
    result = cli("report", "--notebook", "coverage_audit", "--code", CODE, "--out", elsewhere)
    assert result.exit_code == 1 and "no database" in result.stderr
    assert not elsewhere.exists()


def test_an_installed_registry_finds_its_notebooks_by_setting(tmp_path, monkeypatch):
    """An image installs the package without the clone: REGISTRY_NOTEBOOK_DIR points at
    the copied notebooks (docker/Dockerfile), and a wrong one is a clear error."""
    from registry.cli_report import notebook_path
    from registry.settings import RegistryError

    monkeypatch.setenv("REGISTRY_NOTEBOOK_DIR", str(tmp_path))
    with pytest.raises(RegistryError, match="REGISTRY_NOTEBOOK_DIR"):
        notebook_path("coverage_audit")
    (tmp_path / "coverage_audit.ipynb").write_bytes(
        (NOTEBOOK_DIR / "coverage_audit.ipynb").read_bytes()
    )
    assert notebook_path("coverage_audit") == tmp_path / "coverage_audit.ipynb"
