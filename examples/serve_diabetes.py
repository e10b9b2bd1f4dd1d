"""Serve a model and call it: the main job of nbserve, from a plain script.

Trains a regression on scikit-learn's bundled diabetes data, registers it, serves it (Docker when an
engine answers, a local process otherwise), calls it over HTTP and checks the answer against the model.
"""

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LinearRegression

import nbserve

X, y = load_diabetes(return_X_y=True)
lr = LinearRegression().fit(X, y)

inst = nbserve.serve(lr, name="diabetes", sample=X)
client = inst.client()
pred = client.predict(X[:5])
assert np.allclose(pred, lr.predict(X[:5]))
print(f"{inst.model} at {inst.url} ({inst.runtime}) predicts {np.round(pred, 1).tolist()}")
print(f"stop it with: nbserve stop {inst.id}")
