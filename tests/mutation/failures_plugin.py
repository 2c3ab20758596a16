"""pytest plugin for the mutation runner: appends the node id of every failing test to ``$MUTATION_FAILURES``."""

from __future__ import annotations

import os


def pytest_runtest_logreport(report):  # noqa: ANN001, ANN201 - pytest hook
    if report.failed and os.environ.get("MUTATION_FAILURES"):
        with open(os.environ["MUTATION_FAILURES"], "a", encoding="utf-8") as out:
            out.write(report.nodeid + "\n")
