"""trials.csv has one column per name: a cost that is also an objective (latency_ms, params) is written once,
as the objective (it came twice, and pandas read the second as latency_ms.1)."""

import csv
import io

from nnopt.search import trials_csv


def _trial(number, values, chosen, **attrs):
    return {"number": number, "state": "COMPLETE", "values": values, "params": chosen, "duration_s": 0.5,
            "user_attrs": {"epochs_run": 3, **attrs}}


def test_a_cost_that_is_an_objective_is_one_column():
    trials = [_trial(0, [0.64, 0.0155], {"width": 45}, model="m:make_net:width=45", params=856, flops=1620,
                     size_kb=5.59, latency_ms=0.0155),
              _trial(1, [0.08, 0.0303], {"width": 9}, model="m:make_net:width=9", params=352, flops=648,
                     size_kb=4.64, latency_ms=0.0303)]
    rows = list(csv.reader(io.StringIO(trials_csv(trials, ["val_r2", "latency_ms"]))))
    header = rows[0]
    assert len(header) == len(set(header))
    assert header == ["number", "state", "val_r2", "latency_ms", "width", "model", "params", "flops", "size_kb",
                      "duration_s", "epochs_run", "fail_reason"]
    assert [r[header.index("latency_ms")] for r in rows[1:]] == ["0.0155", "0.0303"]
    assert [r[header.index("params")] for r in rows[1:]] == ["856", "352"]
    assert all(len(r) == len(header) for r in rows)
