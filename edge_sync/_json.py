"""One JSON serialisation for result objects: ``to_json()`` in Python is what ``--json`` prints on the command line."""
from __future__ import annotations

import json
from typing import Any


class JsonResult:
    """Mixin for result dataclasses with a ``to_dict``: ``to_json`` is that dict as JSON text, and the CLI prints
    exactly this (so the Python API and ``--json`` cannot drift apart)."""

    def to_dict(self) -> dict[str, Any]:  # each result class defines its own, with its options
        raise NotImplementedError

    def to_json(self, indent: int | None = None, **options: Any) -> str:
        """The JSON the CLI's ``--json`` prints for this result; ``options`` go to ``to_dict`` (e.g.
        ``per_frame=False`` drops the per-frame list); ``indent`` pretty-prints."""
        return json.dumps(self.to_dict(**options), indent=indent)
