"""Object detection: box utilities, anchor assignment (ATSS, IoU threshold), losses, COCO AP, synthetic scenes.

- Boxes (``jaxdyn.detection._boxes``): areas, IoU, GIoU, centre distances, the box encoder and anchor grids,
  pure and jittable, continuous convention by default and the ATSS code's "+1 pixel" one on request.
- ATSS (Zhang et al., CVPR 2020, https://arxiv.org/abs/1912.02424) and RetinaNet's IoU-threshold assignment
  with static shapes (``jaxdyn.detection._assign``).
- Losses (``jaxdyn.detection._losses``): sigmoid focal loss, centerness-weighted GIoU loss and centerness BCE,
  normalized by the number of positives.
- COCO-style AP in NumPy (``jaxdyn.detection._ap``) and synthetic shape scenes (``jaxdyn.detection._scenes``).
- FreeZe's training-free pose core (Caraffa et al., ECCV 2024, https://arxiv.org/abs/2312.00947): Kabsch,
  jittable RANSAC over 3D correspondences and symmetric-object disambiguation by a second feature set
  (``jaxdyn.detection._pose``).
- Historical object prediction (Zong et al., ICCV 2023, https://arxiv.org/abs/2304.00967), a 2-D single-camera
  analogue: the frames feeding the pseudo feature of frame t-k, the short/long-term temporal decoder and the
  combined loss (``jaxdyn.detection._hop``); `synthetic_sequences` (``_scenes``) gives moving shapes.
"""

from jaxdyn.detection import _ap, _assign, _boxes, _hop, _losses, _pose, _scenes
from jaxdyn.detection._ap import *  # noqa: F403  (each module lists its exports in __all__)
from jaxdyn.detection._assign import *  # noqa: F403
from jaxdyn.detection._boxes import *  # noqa: F403
from jaxdyn.detection._hop import *  # noqa: F403
from jaxdyn.detection._losses import *  # noqa: F403
from jaxdyn.detection._pose import *  # noqa: F403
from jaxdyn.detection._scenes import *  # noqa: F403

__all__ = [*_boxes.__all__, *_assign.__all__, *_losses.__all__, *_ap.__all__, *_scenes.__all__, *_pose.__all__,
           *_hop.__all__]
