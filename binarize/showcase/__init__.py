"""The showcase: trained zoo models measured the same way everywhere, their result cards, and ``binarize demo``.

* :func:`measure_checkpoint`: quality (PSNR-Y / SSIM-Y of DDIM samples of the whole held-out photos, against
  bicubic) and cost (parameters and operations in the paper's convention, checkpoint bytes) of one checkpoint.
* :func:`publish` (``binarize publish``): a trained run's checkpoint into the zoo, compacted, with its card.
* :func:`run_demo` (``binarize demo``): the full-precision and the BI-DiffSR zoo models side by side.
* :func:`captioned_grid`: comparison figures with each panel's label inside the picture.
"""

from binarize.showcase.cards import card_markdown, publish, training_summary
from binarize.showcase.demo import DEMO_MODELS, DemoReport, run_demo
from binarize.showcase.figure import captioned_grid
from binarize.showcase.measure import COST_SIZE, DEMO_STEPS, ModelMeasurement, measure_checkpoint

__all__ = [
    "COST_SIZE",
    "DEMO_MODELS",
    "DEMO_STEPS",
    "DemoReport",
    "ModelMeasurement",
    "captioned_grid",
    "card_markdown",
    "measure_checkpoint",
    "publish",
    "run_demo",
    "training_summary",
]
