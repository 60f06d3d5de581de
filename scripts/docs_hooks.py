"""MkDocs hooks (mkdocs.yml ``hooks:``): pages that live outside ``docs/`` and the generated CLI reference.

- The README, the device guides, the weights' recipe, the changelog and the contributing guide stay where GitHub shows
  them; the site includes them as pages (``INCLUDED``), so nothing is copied and nothing drifts.
- Relative links are resolved from the file they were written in: a link to another page (``docs/...`` or an
  included file) becomes a link to that page; a link to any other file of the repository (a script, LICENSE) becomes
  its path in code, since the site does not serve the repository.
- ``cli.md`` is written at build time by Typer's own docs generator from the CLI itself (``typer ... utils docs``).
"""
from __future__ import annotations

import posixpath
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
INCLUDED = {  # site page -> file in the repository
    "index.md": "README.md",
    "devices/raspberry_pi.md": "examples/raspberry_pi/README.md",
    "devices/jetson.md": "examples/jetson/README.md",
    "devices/embed.md": "examples/embed/README.md",
    "weights.md": "edge_sync/weights/README.md",
    "changelog.md": "CHANGELOG.md",
    "contributing.md": "CONTRIBUTING.md",
}
PAGE_OF = {source: page for page, source in INCLUDED.items()}
LINK = re.compile(r"(!?\[[^\]]*\])\(([^)\s#]+)(#[^)\s]*)?\)")


def cli_reference() -> str:
    """Markdown for every command and option, as the installed CLI describes itself."""
    typer = Path(sys.executable).with_name("typer")
    out = subprocess.run([str(typer), "edge_sync.cli", "utils", "docs", "--name", "edge-sync"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    return ("# CLI reference\n\nGenerated from the CLI itself when the site is built; `edge-sync COMMAND --help` "
            "prints the same.\n\n" + out.split("\n", 1)[1])


def on_files(files: Files, config: Any) -> Files:
    for page, source in INCLUDED.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / source)))
    files.append(File.generated(config, "cli.md", content=cli_reference()))
    return files


def _target(page: str, repo_path: str) -> str | None:
    """The site-relative link from ``page`` to the repository file ``repo_path``, or None when it is no page."""
    if repo_path in PAGE_OF:
        dest = PAGE_OF[repo_path]
    elif repo_path.startswith("docs/") and (ROOT / repo_path).exists():
        dest = repo_path[len("docs/"):]
    else:
        return None
    return posixpath.relpath(dest, posixpath.dirname(page) or ".")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    src = page.file.src_uri
    base = posixpath.dirname(INCLUDED.get(src, "docs/" + src))

    def fix(m: re.Match[str]) -> str:
        text, href, anchor = m.group(1), m.group(2), m.group(3) or ""
        if "://" in href or href.startswith("mailto:"):
            return m.group(0)
        repo_path = posixpath.normpath(posixpath.join(base, href))
        link = _target(src, repo_path)
        if link is not None:
            return f"{text}({link}{anchor})"
        return f"{text[1:-1]} (`{repo_path}`)" if (ROOT / repo_path).exists() and not text.startswith("!") \
            else m.group(0)

    return LINK.sub(fix, markdown)
