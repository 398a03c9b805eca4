"""Deployment of binary networks: packed 1-bit weights and the arithmetic on them (:mod:`binarize.deploy.bits`)."""

from binarize.deploy.bits import WORD_BITS, pack_signs, packed_words, popcount, unpack_signs, xnor_matmul

__all__ = ["WORD_BITS", "pack_signs", "packed_words", "popcount", "unpack_signs", "xnor_matmul"]
