"""``python -m bench``: the speed benchmark (:mod:`bench.speed`); ``python -m bench detectors`` compares detectors;
``python -m bench streams`` runs many live cameras in one process (:mod:`bench.streams`)."""

import sys

if sys.argv[1:2] == ["streams"]:
    from bench.streams import main

    sys.exit(main(sys.argv[2:]))

from bench.speed import main

sys.exit(main())
