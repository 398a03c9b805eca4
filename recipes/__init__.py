"""Recipes shipped with binarize (YAML files), addressable by name."""
