"""`python -m busadv.bench`: the same as `python -m busadv bench` (and how the memory children start)."""

import sys

from busadv.bench import main

sys.exit(main())
