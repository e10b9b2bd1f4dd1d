"""Input and output drift against the registration sample.

At registration (nbserve/capture/reference.py) the manifest gets a compact ``reference``: for every
feature of the input (a DataFrame column, a column of a 2-d array) and of each method's output, how the
sample spread over a few bins. A number has quantile edges (deciles of the sample) and the share of
the sample in each bin; a category (strings, booleans, pandas categories) has its most frequent values
and their shares, plus one share for every other value; both also have the share of nulls.

The server bins what it receives by the very same edges (``count``, shared with the capture side, so
both sides bin alike) and keeps only those counts: the requests themselves are never kept, on disk or
elsewhere, once binned. Each worker holds a rolling window of counts (the last ``NBSERVE_DRIFT_WINDOW``
rows, 1000 by default, in blocks) and, under gunicorn, writes it as ``drift_<pid>.json`` into the
instance's metrics directory; ``GET /drift`` sums the windows of every worker and compares them with the
reference:

* the population stability index, PSI = sum((live - ref) * ln(live / ref)) over the bins (shares of 0
  count as 1e-4): below 0.1 ``ok``, from 0.1 ``warn``, from 0.25 ``alert`` (the usual rule of thumb);
* for numbers a two-sample Kolmogorov-Smirnov statistic on the binned distributions (the largest gap
  between the two cumulative shares at the bin edges; the exact statistic is at least that), with its
  asymptotic p-value; for categories Pearson's chi-squared against the reference shares, with a p-value
  from the Wilson-Hilferty approximation;
* a feature *drifts* when its PSI reaches the alert threshold; the answer's overall ``drift`` flag is
  set when at least half the input features drift (as Evidently's dataset drift does). Output features
  are reported beside the inputs and do not count towards that flag.

Dates are binned as days since 1970-01-01 (UTC for a column with a time zone) and durations as seconds,
whatever their unit (``"unit"`` in the feature's reference says so), so the edges read as numbers and a
date column compares alike whether the sample held seconds or nanoseconds. Nulls (NaN, None, NA, NaT) are
a bin of their own: a rise in the null share raises the PSI (and the chi-squared) like any other shift,
and each feature reports both null shares as ``null: {"reference", "live"}``; the KS statistic compares
the non-null values only. A column whose values cannot be binned (in the sample or live) is reported
with status ``not_computed`` and the ``reason``, never dropped silently nor given a number.

Below ``MIN_ROWS`` live rows a feature's status is ``collecting``: PSI on a handful of rows is noise.
Work per request is one append of references to its input and output (a uniform sample of them when more
than ``SAMPLE_REQUESTS`` arrive in a second); binning happens on the worker's housekeeping thread every
``FLUSH_SECONDS``, never on a request. Imports nothing else from nbserve (it ships into images).

``bins.py`` holds the features and bins (shared with the capture side), ``stats.py`` the statistics,
``monitor.py`` the live windows and the merged report.
"""

from .bins import DATE_UNIT, DURATION_UNIT, count, features, reference_spec, unsupported_spec
from .monitor import FILE_PREFIX, WINDOW_ROWS, Monitor, forget_worker, version_directory
from .stats import MIN_ROWS, PSI_ALERT, PSI_WARN, STATUS_CODES, compare, psi

__all__ = [
    "DATE_UNIT",
    "DURATION_UNIT",
    "FILE_PREFIX",
    "MIN_ROWS",
    "PSI_ALERT",
    "PSI_WARN",
    "STATUS_CODES",
    "WINDOW_ROWS",
    "Monitor",
    "compare",
    "count",
    "features",
    "forget_worker",
    "version_directory",
    "psi",
    "reference_spec",
    "unsupported_spec",
]
