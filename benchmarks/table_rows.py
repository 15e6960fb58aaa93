"""How much of a table's score is the rows a network trains on, and how much its epochs.

One table of benchmarks/tables.py (its train.csv / test.csv split, written there if missing), one network trained
with `nnopt.fit` under several settings, each scored on test.csv: the split fractions (nnopt's default keeps 15 %
of train.csv for validation and 15 % for its own test, so a network trains on 70 %; automl's final network on
85 %; AutoGluon's on all but its validation rows) and the number of epochs (with early stopping on validation where
it is given). Mean of the seeds, each seed's score printed too.

    PYTHONPATH=src .venv/bin/python benchmarks/table_rows.py --table hpc --part rows
    PYTHONPATH=src .venv/bin/python benchmarks/table_rows.py --table hpc --part epochs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tables  # noqa: E402  (benchmarks/tables.py: the tables and their splits)

ROWS = [("70 % (the defaults)", {}), ("90 %", {"test_fraction": 0.0, "val_fraction": 0.1}),
        ("100 %", {"test_fraction": 0.0, "val_fraction": 0.0})]
EPOCHS = [("10 epochs", 10, {}), ("40 epochs", 40, {}), ("120, early stopping 15", 120, {"early_stopping": 15})]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--table", default="hpc", choices=sorted(tables.TABLES))
    p.add_argument("--part", default="rows", choices=["rows", "epochs"])
    p.add_argument("--work", default="runs/bench-tables", help="where benchmarks/tables.py keeps its splits")
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()

    import pandas as pd

    import nnopt

    folder = Path(args.work) / args.table
    info = tables.write_split(args.table, folder)
    target, task = info["target"], info["task"]
    train, test = pd.read_csv(folder / "train.csv"), pd.read_csv(folder / "test.csv")
    if args.part == "rows":
        runs = [(name, "mlp:256,128,64", 27, extra) for name, extra in ROWS]
    else:
        runs = [(name, "mlp:128,64", epochs, extra) for name, epochs, extra in EPOCHS]
    for name, model, epochs, extra in runs:
        scores = []
        for seed in range(args.seeds):
            result = nnopt.fit(model, train, target=target, epochs=epochs, seed=seed, progress=False, **extra)
            predicted = nnopt.predict(result, test.drop(columns=[target])).predictions
            if task == "classification":
                scores.append(float((predicted.astype(str) == test[target].astype(str).to_numpy()).mean()))
            else:
                from sklearn.metrics import r2_score

                scores.append(float(r2_score(test[target], predicted.astype(float))))
        print(f"{args.table} {model} {name}: {np.mean(scores):.4f} (seeds {', '.join(f'{s:.4f}' for s in scores)})",
              flush=True)


if __name__ == "__main__":
    main()
