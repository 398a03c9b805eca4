"""Deployment of binary networks: packed 1-bit weights, the export format and the packed runtime.

* :mod:`binarize.deploy.bits`: the bit layout and the reference XOR-popcount arithmetic;
* :mod:`binarize.deploy.export`: :func:`export` / :func:`load` of the packed file format;
* :mod:`binarize.deploy.packed` and :func:`freeze`: inference modules computing on packed bits;
* :mod:`binarize.deploy.reference` and :mod:`binarize.deploy.kernels`: the packed operations in plain torch and
  in compiled C++.
"""

from binarize.deploy.bits import WORD_BITS, pack_signs, packed_words, popcount, unpack_signs, xnor_matmul
from binarize.deploy.export import (
    FORMAT,
    ExportError,
    ExportReport,
    PackedFile,
    export,
    export_checkpoint,
    load,
    read_packed,
)
from binarize.deploy.freeze import DeployReport, freeze
from binarize.deploy.packed import NotPackableError, PackedLayer, binary_signs, pack_layer

__all__ = [
    "FORMAT",
    "WORD_BITS",
    "DeployReport",
    "ExportError",
    "ExportReport",
    "NotPackableError",
    "PackedFile",
    "PackedLayer",
    "binary_signs",
    "export",
    "export_checkpoint",
    "freeze",
    "load",
    "pack_layer",
    "pack_signs",
    "packed_words",
    "popcount",
    "read_packed",
    "unpack_signs",
    "xnor_matmul",
]
