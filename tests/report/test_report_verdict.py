"""The verdict is a pure function of results.json + config.json: crafted inputs, exact sentences."""

from __future__ import annotations

from nnopt.report import verdict


def row(rank, name, lr, acc, std, *, seeds=3, diverged=0, epochs=None, seconds=None, reached=None,
        source="auto", wall=1.0):
    ok = acc is not None
    return {"rank": rank, "optimizer": name, "lr": lr, "lr_source": source, "seeds": seeds, "diverged": diverged,
            "train_loss_mean": 0.1 if ok else None, "test_accuracy_mean": acc, "test_accuracy_std": std,
            "val_accuracy_mean": acc, "val_accuracy_std": std, "epochs_to_target_mean": epochs,
            "time_to_target_s_mean": seconds, "target_reached": reached, "steps_per_s_mean": 100.0,
            "wall_s_mean": wall}


def config(target=None, batch_size=64):
    return {"command": "compare", "epochs": 20, "batch_size": batch_size, "task": "classification",
            "primary_metric": "accuracy", "target_metric": target}


RESULTS = {"primary_metric": "test_accuracy", "higher_is_better": True}


def test_target_reached_ratio_and_ranking():
    rows = [row(1, "adam", 1e-3, 0.962, 0.004, epochs=4, seconds=1.2, reached=3),
            row(2, "sgd", 0.1, 0.951, 0.003, epochs=11, seconds=3.72, reached=3),
            row(3, "gd", 0.5, 0.41, 0.01, reached=0, source="default")]
    text = verdict({**RESULTS, "optimizers": rows}, config({"name": "val_accuracy", "value": 0.95}))
    assert text == [
        "adam ranked first with 96.2 ± 0.4 % test accuracy; gd was last with 41.0 %.",
        "Use adam at lr 1e-3 (LR finder) with batch size 64.",
        "adam reached 95 % val accuracy first, after 1.2 s (4 epochs) on average: 3.1× sooner than sgd (3.7 s).",
        "gd never reached it within 20 epochs.",
    ]


def test_diverged_optimizer_and_partial_target():
    rows = [row(1, "adam", 1e-3, 0.95, 0.01, epochs=5, seconds=2.0, reached=2),
            row(2, "momentum", 0.01, 0.94, 0.01, epochs=6, seconds=4.0, reached=3),
            row(3, "sgd", 0.01, 0.90, 0.01, epochs=9, seconds=20.0, reached=1),
            row(4, "rmsprop", 0.1, 0.80, 0.0, diverged=2, reached=0),
            row(5, "adagrad", 1.0, None, None, diverged=3, reached=0)]
    text = verdict({**RESULTS, "optimizers": rows}, config({"name": "val_accuracy", "value": 0.9}, "full"))
    assert text[0] == "adam ranked first with 95.0 ± 1.0 % test accuracy; rmsprop was last with 80.0 %."
    assert text[1] == "momentum (94.0 ± 1.0 %) is within one standard deviation of adam: treat them as tied."
    assert text[2] == "Use adam at lr 1e-3 (LR finder) with full-batch steps."
    assert text[3] == ("adam reached 90 % val accuracy first, after 2.0 s (5 epochs) on average: "
                       "2.0× sooner than momentum (4.0 s) and 10× sooner than sgd (20.0 s).")
    assert "rmsprop never reached it within 20 epochs." in text
    assert "adam reached it in only 2 of 3 seeds." in text
    assert "sgd reached it in only 1 of 3 seeds." in text
    assert "rmsprop diverged in 2 of 3 seeds at lr 0.1." in text
    assert "adagrad diverged in all 3 seeds at lr 1, so it ranks last; try a lower lr." in text


def test_no_target_reports_wall_clock():
    rows = [row(1, "adam", 1e-3, 0.97, 0.002, wall=2.3), row(2, "gd", 0.5, 0.5, 0.02, wall=0.4)]
    text = verdict({**RESULTS, "optimizers": rows}, config(None, None))
    assert text == [
        "adam ranked first with 97.0 ± 0.2 % test accuracy; gd was last with 50.0 %.",
        "Use adam at lr 1e-3 (LR finder).",
        "No target metric was set, so time to target was not measured; a run took 0.4 s with gd and "
        "2.3 s with adam (mean wall-clock).",
    ]


def test_equal_scores_at_the_shown_precision_are_a_tie():
    rows = [row(1, "sgd", 0.1, 0.31804, 0.002), row(2, "adam", 1e-3, 0.31782, 0.003)]  # both 31.8 %
    text = verdict({**RESULTS, "optimizers": rows}, config(None, None))
    assert text[0] == "sgd and adam tied with 31.8 % test accuracy (equal at the precision shown)."
    assert not any("within one standard deviation" in sentence for sentence in text)  # said once, above

    rows = [row(1, "sgd", 0.1, 0.318, 0.002), row(2, "adam", 1e-3, 0.318, 0.002), row(3, "gd", 0.5, 0.21, 0.01),
            row(4, "adagrad", 0.01, 0.2104, 0.01)]
    text = verdict({**RESULTS, "optimizers": rows}, config(None, None))
    assert text[0] == ("sgd and adam tied for first with 31.8 % test accuracy; "
                       "gd and adagrad tied for last with 21.0 %.")


def test_no_optimizer_reached_target_and_regression_metric():
    rows = [{"rank": 1, "optimizer": "adam", "lr": 0.003, "lr_source": "grid", "seeds": 1, "diverged": 0,
             "test_r2_mean": 0.8123, "test_r2_std": 0.0, "target_reached": 0}]
    cfg = {"command": "compare", "epochs": 5, "task": "regression", "batch_size": 32,
           "target_metric": {"name": "val_r2", "value": 0.9}}
    text = verdict({"primary_metric": "test_r2", "higher_is_better": True, "optimizers": rows}, cfg)
    assert text == ["adam reached 0.8123 test R².", "Use adam at lr 3e-3 (best of grid) with batch size 32.",
                    "No optimizer reached val R² 0.9 within 5 epochs."]


def test_everything_diverged():
    rows = [row(1, "sgd", 10.0, None, None, seeds=1, diverged=1)]
    text = verdict({**RESULTS, "optimizers": rows}, config())
    assert text[0].startswith("Every optimizer diverged")
    assert "sgd diverged at lr 10; try a lower lr." in text


def test_empty_results():
    assert verdict({}, {}) == ["The results hold no optimizer; nothing to compare."]
