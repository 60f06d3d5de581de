"""Copy generated Markdown reports into README.md between <!-- NAME:start --> and <!-- NAME:end --> markers, so the
README's tables are generated, never typed. Usage: python scripts/readme_tables.py docs/parity_cpu.md ..."""
from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def main(paths: list[str]) -> None:
    text = README.read_text()
    for path in map(Path, paths):
        name = path.stem
        body = path.read_text().split("\n", 2)[-1].strip()  # drop the report's own title
        pattern = re.compile(rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- {name}:start --> ... <!-- {name}:end --> block")
        text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
    README.write_text(text)


if __name__ == "__main__":
    main(sys.argv[1:])
