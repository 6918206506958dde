"""``python -m bench``: run every benchmark and update BENCHMARKS.md (see bench.run_all)."""

from __future__ import annotations

import sys

from bench.run_all import main

sys.exit(main())
