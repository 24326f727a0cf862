"""A tiny labelled transaction frame with one planted fraud pattern, for tests and smoke runs.

Not a simulator (that is :mod:`txmon.sim`): just enough structure that a model can learn something
in seconds. Fraud: a burst of night-time card payments to new merchants at several times the account's
usual amount; labels arrive ``label_delay`` later. Transfers between accounts exercise the credit side.

>>> f = toy_frame(accounts=5, days=3, seed=1)
>>> {"tx_id", "event_time", "account_id", "counterparty_id", "amount", "label"} <= set(f.columns)
True
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def toy_frame(accounts: int = 60, days: int = 20, seed: int = 0, fraud_rate: float = 0.15,
              label_delay: pd.Timedelta = pd.Timedelta("3D")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-05", tz="UTC")
    rows = []
    merchants = [f"m{i}" for i in range(40)]
    for a in range(accounts):
        acc = f"acc{a}"
        usual = float(rng.lognormal(3.0, 0.5))
        favourites = list(rng.choice(merchants, 4, replace=False))
        for d in range(days):
            for _ in range(int(rng.poisson(2))):
                t = start + pd.Timedelta(days=d, hours=float(rng.uniform(8, 20)))
                rows.append((acc, t, str(rng.choice(favourites)), round(usual * rng.lognormal(0, .3), 2),
                             "card", "purchase", "5411", "DE", 0))
            if rng.random() < 0.05:
                other = f"acc{int(rng.integers(accounts))}"
                t = start + pd.Timedelta(days=d, hours=float(rng.uniform(8, 20)))
                rows.append((acc, t, other, round(usual * 3, 2), "online", "transfer", None, "DE", 0))
        if rng.random() < fraud_rate:
            d = int(rng.integers(days // 3, days))
            for j in range(int(rng.integers(2, 5))):
                t = start + pd.Timedelta(days=d, hours=2, minutes=7 * j)
                amount = round(usual * 6 * rng.lognormal(0, .2), 2)
                rows.append((acc, t, f"x{int(rng.integers(10_000))}", amount, "online", "purchase",
                             "5732", "NG", 1))
    f = pd.DataFrame(rows, columns=["account_id", "event_time", "counterparty_id", "amount", "channel",
                                    "tx_type", "mcc", "country", "y"])
    f["event_time"] = f["event_time"].dt.floor("s")
    f = f.sort_values("event_time", kind="stable").reset_index(drop=True)
    f.insert(0, "tx_id", [f"t{i}" for i in range(len(f))])
    f["currency"] = "EUR"
    f["direction"] = "debit"
    f["label"] = np.where(f.pop("y") == 1, "fraud", "legit")
    f["label_time"] = f["event_time"] + label_delay
    return f
