"""A realistic mixed-type table and the models trained on it, shared by the tests of tests/models."""

import numpy as np
import pandas as pd


def rentals(n=300, seed=0):
    """Bike rentals: dates, categories, missing values, booleans, nullable integers and strings."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "temp": rng.normal(15, 8, n).round(1),
            "humidity": np.where(rng.random(n) < 0.1, np.nan, rng.uniform(20, 95, n).round(0)),
            "riders_yesterday": pd.array(np.where(rng.random(n) < 0.1, None, rng.integers(0, 500, n)), dtype="Int64"),
            "holiday": rng.random(n) < 0.05,
            "season": pd.Categorical(rng.choice(["winter", "spring", "summer", "autumn"], n)),
            "station": np.where(rng.random(n) < 0.05, None, rng.choice(["north", "south", "harbour"], n)).astype(
                object
            ),
            "day": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
        }
    )
    busy = 0.08 * frame["temp"] - 0.02 * frame["humidity"].fillna(60) + (frame["season"] == "summer") * 1.5
    return frame, (busy + rng.normal(0, 0.5, n) > 0.3).astype(int)


def day_features(frame):
    """Month and weekday of the date column: what a model can use of a date."""
    day = frame["day"]
    return np.column_stack([day.dt.month, day.dt.day_of_week])


def mixed_pipeline(frame, target):
    """A ColumnTransformer (imputation, one-hot, date parts) before gradient boosting."""
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(), ["temp", "humidity", "riders_yesterday"]),
            ("flag", "passthrough", ["holiday"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["season", "station"],
            ),
            ("day", FunctionTransformer(day_features), ["day"]),
        ]
    )
    return make_pipeline(prep, HistGradientBoostingClassifier(max_iter=30, random_state=0)).fit(frame, target)


def check_native_category_model(inst, model, rows, timeout):
    """A served xgboost model with native categories answers like the kernel, and an unseen category is the
    client's 400 naming the column (not xgboost's 500 with a C++ stack trace)."""
    import requests

    from nbserve.server.schema import frame_split

    client = inst.client(timeout=timeout)
    np.testing.assert_array_equal(client.predict(rows), model.predict(rows))
    np.testing.assert_allclose(client.predict_proba(rows), model.predict_proba(rows), rtol=1e-6)
    body = frame_split(rows.iloc[:2])
    body["data"][0][body["columns"].index("season")] = "monsoon"
    resp = requests.post(inst.url + "/predict", json={"data": body}, timeout=timeout)
    assert resp.status_code == 400 and "column 'season'" in resp.json()["error"]["message"], resp.text
