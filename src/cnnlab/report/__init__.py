"""After training: a run's plots (`cnnlab plot`), its HTML report (`cnnlab report`) and runs
compared (`cnnlab compare`: `from cnnlab.report.compare import compare`), all read from run
folders. Names are imported on first use."""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

_WHERE: dict[str, str] = {
    "RunRecord": "run_folder",
    "read_run": "run_folder",
    "Predictions": "predictions",
    "load_predictions": "predictions",
    "Calibration": "calibration",
    "calibration_of": "calibration",
    "calibration_figure": "calibration",
    "run_figures": "plots",
    "write_plots": "plots",
    "write_report": "run_report",
    "explain": "explanations",
    "Explanation": "explanations",
}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = list(_WHERE)
