"""Entry point for `python -m busadv`."""

import sys

from busadv.cli import main

if __name__ == "__main__":
    sys.exit(main())
