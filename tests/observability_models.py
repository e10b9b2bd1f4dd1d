"""The two models the observability tests serve: a linear model on a float array (diabetes) and a
gradient-boosted model (HistGradientBoosting) on a DataFrame with the columns real data has (a date,
missing values as NaN, NA and None, a nullable integer, a category, a boolean, strings), with inputs
shifted on chosen features."""

import functools

import numpy as np

SHIFTED_ARRAY = {"x2", "x5"}
SHIFTED_FRAME = {"age", "plan", "signup"}
NULLIER_FRAME = {"balance", "region"}  # null shares raised from about 10 % to 50 %


def mixed_frame(n=1500, seed=0, null_share=None):
    """Customers: float (age; balance with NaN), nullable Int64 with NA (visits), category (plan), bool
    (member), strings with None (region) and a date (signup). ``null_share`` replaces the null shares of
    balance and region (about 0.1 otherwise)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    missing = null_share if null_share is not None else 0.08
    return pd.DataFrame(
        {
            "age": rng.normal(45, 12, n).round(1),
            "visits": pd.array(np.where(rng.random(n) < 0.1, None, rng.poisson(4, n)), dtype="Int64"),
            "plan": pd.Categorical(rng.choice(["basic", "plus", "pro"], n, p=[0.6, 0.3, 0.1])),
            "member": rng.random(n) < 0.4,
            "region": np.where(rng.random(n) < missing, None, rng.choice(["north", "south", "east", "west"], n)),
            "balance": np.where(
                rng.random(n) < (null_share if null_share is not None else 0.1), np.nan, rng.gamma(2, 500, n).round(2)
            ),
            "signup": pd.to_datetime("2022-01-01") + pd.to_timedelta(rng.integers(0, 730, n), unit="D"),
        }
    )


def signup_days(frame):
    """The signup date as days since 2022 (what a tree model can split on)."""
    return ((frame["signup"] - np.datetime64("2022-01-01")) / np.timedelta64(1, "D")).to_numpy().reshape(-1, 1)


def as_floats(frame):
    """Numbers, nullable integers and booleans as floats, NA as NaN (HistGradientBoosting's missing value)."""
    return frame.astype("float64").to_numpy()


@functools.cache  # one fit per test session: several tests serve or capture it
def gbm_on_frame():
    """(sample DataFrame, fitted pipeline: ordinal-encoded categories, the date as days, then scikit-learn's
    HistGradientBoostingRegressor, which takes the NaN of balance and visits as they are).

    HistGradientBoosting runs OpenMP: served with its normal threading since the workers load it
    themselves after the fork (nbserve/server/forksafe.py)."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

    frame = mixed_frame()
    y = (
        frame["age"] * 0.5
        + frame["visits"].fillna(4).astype(float) * 2
        + (frame["plan"] == "pro") * 10
        + frame["member"] * 3
        + frame["balance"].fillna(1000) / 200
    )
    model = make_pipeline(
        ColumnTransformer(
            [
                ("cat", OrdinalEncoder(), ["plan", "region"]),
                ("day", FunctionTransformer(signup_days), ["signup"]),
                ("num", FunctionTransformer(as_floats), ["age", "visits", "member", "balance"]),
            ]
        ),
        HistGradientBoostingRegressor(max_iter=40, max_depth=3, random_state=0),
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
    """Fresh rows of the same distribution with age 25 years older, the plan almost always "pro" and
    signups a year later than any in the sample."""
    import pandas as pd

    frame = mixed_frame(n, seed)
    frame["age"] = frame["age"] + 25
    frame["plan"] = np.where(np.random.default_rng(seed).random(n) < 0.9, "pro", "basic")
    frame["signup"] = frame["signup"] + pd.Timedelta(days=1095)
    return frame


def nullier_frame(n=500, seed=6):
    """Fresh rows where half of balance (NaN) and of region (None) are missing; the rest as in the sample."""
    return mixed_frame(n, seed, null_share=0.5)


def records(frame):
    """The rows as JSON records, as a client writes them: ISO dates, nulls for NaN, NA and None."""
    from nbserve.server.schema import frame_records

    return frame_records(frame.astype({"plan": str}))
