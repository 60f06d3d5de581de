"""The JSON Schema of an artifact's ``manifest.json``, and the one-line error for the first field that breaks it.

Why a schema: the runtime reads a dozen manifest fields (entry paths, file hashes, the contract, time range,
context) and a malformed one used to surface as a KeyError or TypeError deep inside a backend. Checked up front,
every such manifest gets one line that names the field. The rules are plain JSON Schema, checked by jsonschema
(pure Python), so they stay declarative and can be published for other tools. Only what the runtime reads is
constrained; other fields (parity, tools, notes) may grow freely.
"""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from edge_sync.spec import AUDIO_INPUTS, PREPROCESSING

FORMAT = "edge-sync-artifact"
TARGETS = ("onnx", "openvino", "coreml", "tflite", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
# Frames of context per side of a window. More than a default window (10 s) is no sync model's receptive field,
# and would make every window several times the memory the runtime promises.
MAX_CONTEXT_FRAMES = 250
MAX_MESSAGE = 200

_POSITIVE = {"type": "integer", "minimum": 1}
_PATH = {"type": "string", "minLength": 1}
_TENSOR = {"type": "object", "required": ["name", "dtype", "shape"],
           "properties": {"name": {"type": "string"}, "dtype": {"type": "string"},
                          "shape": {"type": "array", "items": {"type": "string"}}}}
_CONTRACT = {
    "type": "object",
    "required": ["audio_input", "video_preprocessing", "max_offset"],
    "properties": {
        "audio_input": {"enum": list(AUDIO_INPUTS)},
        "video_preprocessing": {"type": "object", "required": ["name"],
                                "properties": {"name": {"enum": list(PREPROCESSING)}}},
        "max_offset": _POSITIVE,
        "min_frames": _POSITIVE,
        "inputs": {"type": "array", "items": _TENSOR},
        "outputs": {"type": "array", "items": _TENSOR},
        "embeddings": {"type": "boolean"},
    },
}
_TIME_RANGE = {
    "type": "object",
    "properties": {
        "min_frames": _POSITIVE,
        "opt_frames": _POSITIVE,
        "max_frames": {"type": ["integer", "null"], "minimum": 1},
        "dynamic": {"type": "boolean"},
        "buckets": {"type": "array", "minItems": 1, "items": _POSITIVE},
    },
}
_FILE = {
    "type": "object",
    "required": ["sha256", "bytes"],
    "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                   "bytes": {"type": "integer", "minimum": 0}},
}
MANIFEST_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "edge-sync artifact manifest",
    "type": "object",
    "required": ["format", "format_version", "spec_version", "target", "precision", "contract", "entry", "files"],
    "properties": {
        "format": {"const": FORMAT},
        "format_version": _POSITIVE,
        "spec_version": {"type": "integer"},
        "name": {"type": "string"},
        "target": {"enum": list(TARGETS)},
        "precision": {"enum": list(PRECISIONS)},
        "contract": _CONTRACT,
        "time_range": _TIME_RANGE,
        "receptive_field_frames": {"type": "integer", "minimum": 0, "maximum": MAX_CONTEXT_FRAMES},
        # every file a backend opens is named here, and every one of them must be hashed in ``files``
        "entry": {"type": "object", "required": ["model"], "additionalProperties": _PATH},
        "files": {"type": "object", "minProperties": 1, "additionalProperties": _FILE},
        "coreml": {"type": "object", "properties": {"flexible_shapes": {
            "type": "object", "properties": {"audio_steps_per_frame": _POSITIVE}}}},
        "source": {"type": "object"},
    },
}


@lru_cache(maxsize=1)
def _validator() -> Any:
    """The compiled validator (jsonschema is imported here: a CLI that never opens an artifact skips its import)."""
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(MANIFEST_SCHEMA)
    return Draft202012Validator(MANIFEST_SCHEMA)


def field_name(path: list[Any]) -> str:
    """``contract.max_offset``, ``files["model.onnx"].sha256``, ``time_range.buckets[0]``: how a user finds it."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isidentifier():
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out or "the manifest"


def manifest_problem(manifest: dict[str, Any]) -> str | None:
    """None for a manifest the runtime can read, else one line: the field, then what is wrong with it."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(manifest))
    if error is None:
        return None
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = next(p for p in error.validator_value if p not in error.instance)
        return f"{field_name(path + [missing])} is missing"
    message = " ".join(error.message.split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 3] + "..."
    return f"{field_name(path)}: {message}"
