"""Where the model looks, and how far an attack moves it: Grad-CAM maps, lesion scores, the pointing game, exports.

Grad-CAM comes from the maintained `grad-cam` package (imported only when a map is drawn: it pulls in
OpenCV and matplotlib). Nothing here imports Streamlit: the explorer page, the CLI and notebooks share it.
"""

from busadv.explain.export import Comparison, Panel, comparison_html, comparison_png
from busadv.explain.gradcam import AttentionMapper, CamResult, gradcam, last_conv, layer_fn
from busadv.explain.lesion import AttentionShift, attention_shift, lesion_score, map_correlation, peak
from busadv.explain.overlay import attention_difference, cam_overlay
from busadv.explain.pointing import NoLesionMasks, PointingRow, lesion_images, pointing_game, pointing_table

__all__ = [
    "AttentionMapper", "AttentionShift", "CamResult", "Comparison", "NoLesionMasks", "Panel",
    "PointingRow", "attention_difference", "attention_shift", "cam_overlay", "comparison_html", "comparison_png",
    "gradcam", "last_conv", "layer_fn", "lesion_images", "lesion_score", "map_correlation", "peak",
    "pointing_game", "pointing_table",
]
