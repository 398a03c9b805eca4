"""``python -m binarize``: the same command line as ``binarize``."""

from binarize.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
