"""Looking inside a model: layer summary with receptive fields, conv arithmetic, filters and
feature maps. Names are imported on first use, so `cnnlab convcalc` never waits for torch."""

from __future__ import annotations

from cnnlab.lazy import lazy_exports

_WHERE: dict[str, str] = {
    "compare_params": "params",
    "follow_chain": "convcalc",
    "LayerRow": "layer_summary",
    "ModelSummary": "layer_summary",
    "summary": "layer_summary",
    "Field": "field_rules",
    "Trace": "receptive",
    "trace": "receptive",
    "conv_filters": "features",
    "feature_maps": "features",
    "plot_feature_maps": "features",
    "plot_filters": "features",
    "write_features": "features",
    "Explained": "gradcam",
    "explain_batch": "gradcam",
}
__getattr__ = lazy_exports(__name__, _WHERE)
__all__ = list(_WHERE)
