"""Calibration sets for INT8 export: build (synthetic or a folder of videos), version, load and verify."""
from edge_sync.calibration.sets import (CalibrationError, CalibrationSet, load_calibration_set,
                                        write_calibration_set)
from edge_sync.calibration.sources import build_calibration_set, default_calibration_set

__all__ = ["CalibrationError", "CalibrationSet", "build_calibration_set", "default_calibration_set",
           "load_calibration_set", "write_calibration_set"]
