"""``python -m bench``: the speed benchmark (:mod:`bench.speed`); ``python -m bench detectors`` compares detectors."""

import sys

from bench.speed import main

sys.exit(main())
