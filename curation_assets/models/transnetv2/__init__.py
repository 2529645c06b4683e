"""TransNetV2, the shot-transition network of NeMo Curator's scene-detection stage (no Dagster).

Only the network lives here: its weights (:mod:`.weights`), the loaded model that turns windows
of 48x27 frames into per-frame transition probabilities (:mod:`.network`) and its CPU forward
(:mod:`.fast_forward`). The stage around it is :mod:`curation_assets.models.scene_detection`
(the 48x27 decode) and :mod:`curation_assets.core.scenes` (the reference's 100-frame windows and
the scenes-to-spans rules, which take the network as a callable); nothing here imports the stage.
"""

from .network import FRAME_HEIGHT, FRAME_WIDTH, TransNetV2Model
from .weights import default_weights_path, load_transnetv2, package_dir

__all__ = ["FRAME_HEIGHT", "FRAME_WIDTH", "TransNetV2Model", "default_weights_path", "load_transnetv2", "package_dir"]
