"""The two models the observability tests serve: a linear model on a float array (diabetes) and a
gradient-boosted model on a DataFrame with mixed column types, with inputs shifted on chosen features."""

import numpy as np

SHIFTED_ARRAY = {"x2", "x5"}
SHIFTED_FRAME = {"age", "plan"}


def mixed_frame(n=1500, seed=0):
    import pandas as pd

    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "age": rng.normal(45, 12, n).round(1),
            "visits": rng.poisson(4, n).astype("int64"),
            "plan": pd.Categorical(rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1])),
            "member": rng.random(n) < 0.4,
            "region": rng.choice(["north", "south", "east", "west"], n),
        }
    )


def gbm_on_frame():
    """(sample DataFrame, fitted pipeline: ordinal-encoded categories + GradientBoostingRegressor).

    Not HistGradientBoosting: its OpenMP pool, started by the replay in gunicorn's arbiter, hangs the
    forked workers (the process runtime's known limit with OpenMP models, see ENVIRONMENT.md)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    frame = mixed_frame()
    y = frame["age"] * 0.5 + frame["visits"] * 2 + (frame["plan"] == "pro") * 10 + frame["member"] * 3
    model = make_pipeline(
        ColumnTransformer([("cat", OrdinalEncoder(), ["plan", "region"])], remainder="passthrough"),
        GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=0),
    )
    return frame, model.fit(frame, y)


def shifted_array(X, n=500, seed=1):
    """Rows drawn from X with x2 moved up by two standard deviations and x5 spread three times wider."""
    rng = np.random.default_rng(seed)
    rows = X[rng.integers(0, len(X), n)].copy()
    rows[:, 2] += 2 * X[:, 2].std()
    rows[:, 5] *= 3
    return rows


def unshifted_array(X, n=500, seed=2):
    rng = np.random.default_rng(seed)
    return X[rng.integers(0, len(X), n)].copy()


def shifted_frame(n=500, seed=3):
    """Fresh rows of the same distribution with age 25 years older and the plan almost always "pro"."""
    frame = mixed_frame(n, seed)
    frame["age"] = frame["age"] + 25
    frame["plan"] = np.where(np.random.default_rng(seed).random(n) < 0.9, "pro", "basic")
    return frame


def records(frame):
    out = frame.astype({"plan": str}).to_dict(orient="records")
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in out]
