"""`python -m bench.soak`: the soak, run from the repository root."""

from __future__ import annotations

import sys

from bench.soak.run import main

sys.exit(main())
