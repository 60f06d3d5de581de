"""Which export options each target reads: the registry's table, and the refusal of one nothing would read."""
from __future__ import annotations

import sys

import pytest

from edge_sync.exporters import EXPORTERS
from edge_sync.exporters.api import check_options, export, options_for
from edge_sync.exporters.applicable import ALL_PRECISIONS, InapplicableOptionError, refuse_inapplicable

# the decision, option by option (docs/export.md "Which options apply"): what each target's exporter really reads
EXPECTED = {
    "onnx": {"calib": ("int8",), "calib_method": ("int8",), "int8_stems": ("int8",), "time_range": ALL_PRECISIONS},
    "openvino": {"calib": ("int8",), "time_range": ALL_PRECISIONS},
    "coreml": {"time_range": ALL_PRECISIONS, "calib": ("int8",) if sys.platform == "darwin" else ()},
    "tflite": {"calib": ("int8",), "buckets": ALL_PRECISIONS},
    "tensorrt": {"calib": ("int8",), "calib_method": ("int8",), "int8_stems": ("int8",),
                 "time_range": ALL_PRECISIONS},
}
OPTIONS = ("calib", "calib_method", "int8_stems", "time_range", "buckets")


def test_the_registry_says_which_options_each_target_reads():
    assert {t: {k: tuple(v) for k, v in e.takes.items() if v} for t, e in EXPORTERS.items()} == {
        t: {k: v for k, v in table.items() if v} for t, table in EXPECTED.items()}


@pytest.mark.parametrize("target", sorted(EXPECTED))
@pytest.mark.parametrize("precision", ALL_PRECISIONS)
@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_target_precision_is_taken_or_refused(target, precision, option):
    reads = precision in EXPECTED[target].get(option, ())
    if reads:
        check_options([target], precision, {option: "x"})
        assert option in options_for(target, precision, {option: "x"})
        return
    with pytest.raises(InapplicableOptionError) as exc:
        check_options([target], precision, {option: "x"})
    assert exc.value.option == option and target in str(exc.value) and "\n" not in str(exc.value)
    assert option not in options_for(target, precision, {option: "x"})  # never handed to an exporter


def test_all_takes_an_option_one_target_reads_and_hands_it_only_to_that_one():
    targets = sorted(EXPECTED)
    check_options(targets, "int8", {"calib_method": "entropy", "buckets": (50,)})
    assert [t for t in targets if "calib_method" in options_for(t, "int8", {"calib_method": "entropy"})] == [
        "onnx", "tensorrt"]
    with pytest.raises(InapplicableOptionError, match="--calib-method does not apply to any of"):
        check_options(targets, "fp32", {"calib_method": "entropy"})


def test_none_means_not_given():
    check_options(["tflite"], "fp32", {"calib": None, "calib_method": None, "time_range": None, "buckets": None})


def test_the_message_names_where_the_option_does_apply():
    takes = {"a": {"x": ALL_PRECISIONS}, "b": {"x": ("int8",)}, "c": {}}
    with pytest.raises(InapplicableOptionError) as exc:
        refuse_inapplicable(["x"], ["c"], "fp32", takes, {"x": "--ex"})
    assert str(exc.value) == "--ex does not apply to c at fp32; it applies to: a, b (int8)"


def test_the_python_api_refuses_before_loading_the_model(tmp_path):
    # the checkpoint does not exist: the refusal must come first
    with pytest.raises(InapplicableOptionError, match="--calib-method"):
        export(tmp_path / "missing.pt", "tflite", "int8", tmp_path, calib_method="entropy")
    assert list(tmp_path.iterdir()) == []
