"""The docs site builds with warnings as errors (a broken link, a missing page, a docstring the API reference cannot
read), the CLI reference lists every command, and the README stays a front page."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 10 * 1024  # bytes: what it is, install, a quick start, links; the rest lives in docs/


def test_readme_is_short_and_starts_with_the_set_up_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= README_LIMIT
    first_block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert first_block.startswith("bash scripts/setup.sh && .venv/bin/edge-sync demo")


def test_docs_site_builds_strict(tmp_path: Path):
    pytest.importorskip("mkdocs", reason="pip install -e '.[docs]'")
    pytest.importorskip("material", reason="pip install -e '.[docs]'")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    from edge_sync.cli import app

    cli = (tmp_path / "cli" / "index.html").read_text()
    for command in app.registered_commands:
        assert f"edge-sync {command.name}" in cli, command.name
    api = (tmp_path / "api" / "index.html").read_text()
    assert "to_json" in api and "sync_file" in api  # the reference is read from the docstrings
    pi = (tmp_path / "devices" / "raspberry_pi" / "index.html").read_text()
    assert "piwheels.org" in pi  # the device guide is a page of the site, not a copy
