"""The two model families of the notebook-loop tests (issue 22), each with what the tests need to tell its
versions apart: a linear model on an array (diabetes) and a gradient-boosted pipeline over the mixed-type
rentals frame. Imported by name (tests/ is on sys.path)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "models"))

from frames import mixed_pipeline, rentals


@dataclass
class Family:
    name: str
    sample: object  # the registration sample
    v1: object
    v2: object  # another fit: answers the loop's request differently
    path: str  # the route the request loop posts to
    rows: object  # the loop's request rows
    method: str

    def body(self) -> dict:
        import json

        from nbserve.client import encode
        from nbserve.server import jsonio

        return {"data": json.loads(jsonio.dumps(encode(self.rows)))}

    def key(self, payload):
        """What of an answer's JSON tells the versions apart: every value, rounded."""
        return tuple(np.round(np.asarray(payload["data"], dtype=float).ravel(), 6))

    def expected(self, model) -> tuple:
        from nbserve.server.schema import answer

        return self.key(answer(getattr(model, self.method)(self.rows)))

    def nudged(self, model):
        """A candidate that answers differently from ``model`` exactly on the rows ``differs`` picks."""
        return Nudged(model, self.name)

    def differs(self, rows) -> np.ndarray:
        return Nudged.picks(rows, self.name)


class Nudged:
    """``model`` with its answers changed on a known subset of rows: diabetes rows whose first feature is
    positive get 1 more; rentals rows in summer get the other label (and probabilities swapped)."""

    def __init__(self, model, family: str):
        self.model, self.family = model, family
        if hasattr(model, "predict_proba"):
            self.predict_proba = self._proba

    @staticmethod
    def picks(rows, family: str):
        if family == "diabetes":
            return np.asarray(rows)[:, 0] > 0
        return (rows["season"] == "summer").to_numpy()

    def predict(self, rows):
        out = self.model.predict(rows)
        picked = Nudged.picks(rows, self.family)
        return np.where(picked, out + 1.0, out) if self.family == "diabetes" else np.where(picked, 1 - out, out)

    def _proba(self, rows):
        out = self.model.predict_proba(rows)
        picked = Nudged.picks(rows, self.family)
        return np.where(picked[:, None], out[:, ::-1], out)


def diabetes() -> Family:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression, Ridge

    X, y = load_diabetes(return_X_y=True)
    return Family("diabetes", X, LinearRegression().fit(X, y), Ridge(alpha=0.5).fit(X, y), "/predict", X[:3], "predict")


def rentals_family() -> Family:
    frame, target = rentals()
    v1 = mixed_pipeline(frame, target)
    v2 = mixed_pipeline(frame, target.where(frame["season"] != "summer", 0))
    rows = frame.iloc[:4]
    return Family("rentals", frame, v1, v2, "/predict_proba", rows, "predict_proba")


FAMILIES = {"diabetes": diabetes, "rentals": rentals_family}


class WithPandas:
    """``model`` whose answers pass through pandas: the same answers, and another requirements lock (pandas and
    its dependencies), so that a Docker instance cannot load it in place."""

    def __init__(self, model):
        self.model = model

    def predict(self, rows):
        import pandas as pd

        return pd.Series(self.model.predict(rows)).to_numpy()
