"""Reference networks, addressable as ``zoo:NAME``."""
