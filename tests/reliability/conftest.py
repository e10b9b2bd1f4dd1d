"""Fixtures of the reliability suite, and the closing line with its numbers (printed by tests/conftest.py,
which also adds up the tallies of the xdist workers)."""

from reliability_tools import TALLY


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints the sum of every worker's tally
        workeroutput["nbserve_tally"] = dict(TALLY)
