import os

import pytest
import torch

# Small models train fastest on one thread; tests should not compete for the 2 cores of CI.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def run_cli(capsys):
    """Run `nnopt ARGS` in-process; return (exit code, stdout, stderr)."""
    from nnopt.cli import main

    def run(*args: str):
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def digits_automl(tmp_path_factory):
    """One `nnopt automl --data digits --json` run (in-process), made on first use and shared by the tests that
    read a finished automl run directory: tests/pipeline/test_automl.py checks its outputs and figures,
    tests/report/test_browser.py renders its reports. Returns (run directory, budget in seconds, summary)."""
    import contextlib
    import io
    import json

    from nnopt.cli import main

    budget_s = 60  # digits needs 37-45 s on 2 busy cores (the too-small message), so no less
    run = tmp_path_factory.mktemp("digits-automl") / "automl"
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["automl", "--data", "digits", "--budget", f"{budget_s}s", "--out", str(run), "--json"])
    assert code == 0, err.getvalue()
    return run, budget_s, json.loads(out.getvalue())


@pytest.fixture(scope="session")
def penguins_automl_all_rows(tmp_path_factory):
    """One `nnopt automl --test-fraction 0 --json` run (in-process) on palmerpenguins split 80/20 into train.csv and
    test.csv, as a user who keeps their own test file has them; shared by tests/pipeline/test_automl.py (the
    final model trained on every row of train.csv) and tests/report/test_browser.py (its reports render).
    Returns (run directory, train.csv, test.csv, summary)."""
    import contextlib
    import io
    import json

    import palmerpenguins
    from sklearn.model_selection import train_test_split

    from nnopt.cli import main

    root = tmp_path_factory.mktemp("penguins-automl")
    frame = palmerpenguins.load_penguins()
    train, test = train_test_split(frame, test_size=0.2, random_state=0, stratify=frame["species"])
    train.to_csv(root / "train.csv", index=False)
    test.to_csv(root / "test.csv", index=False)
    run = root / "automl"
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.redirect_stderr(io.StringIO()) as err:
        code = main(["automl", "--data", str(root / "train.csv"), "--target", "species", "--budget", "45s",
                     "--test-fraction", "0", "--out", str(run), "--json"])
    assert code == 0, err.getvalue()
    return run, root / "train.csv", root / "test.csv", json.loads(out.getvalue())
