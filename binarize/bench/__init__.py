"""Benchmarks that print ratios: binarized training against its full-precision twin, and the conversion itself.

* :func:`measure_overhead` (``binarize bench overhead``): time and peak memory of a training step of a binarized
  model against its full-precision twin (:func:`fp_twin_recipe`: the same recipe with binarizers and scale off).
* :func:`measure_rewrite` (``binarize bench rewrite``): time of :func:`binarize.binarize` against one forward pass.

Importing this package registers the ``bench`` command (``binarize.bench.cli``) only through
:data:`binarize.cli.COMMAND_MODULES`; the measurements themselves need nothing from the command line.
"""

from binarize.bench.memory import LiveTensorBytes, peak_memory
from binarize.bench.overhead import OverheadResult, measure_overhead
from binarize.bench.rewrite import RewriteResult, measure_rewrite
from binarize.bench.step import TrainingStep, training_batch
from binarize.bench.twin import fp_twin_recipe

__all__ = [
    "LiveTensorBytes",
    "OverheadResult",
    "RewriteResult",
    "TrainingStep",
    "fp_twin_recipe",
    "measure_overhead",
    "measure_rewrite",
    "peak_memory",
    "training_batch",
]
