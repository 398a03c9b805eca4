"""binarize: turn full-precision PyTorch networks into binary networks."""
