"""The throwaway PostgreSQL server of tests/pg.py, and Optuna on it from several processes."""

import subprocess
import sys
import textwrap

import pytest
from pg import postgres_url  # noqa: F401


def test_sql_round_trip(postgres_url):  # noqa: F811
    import psycopg2
    from sqlalchemy.engine import make_url

    u = make_url(postgres_url)
    assert u.host == "127.0.0.1" and u.username == "nnopt" and u.database == "nnopt" and u.password
    with psycopg2.connect(host=u.host, port=u.port, user=u.username, password=u.password, dbname=u.database) as conn:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE t (id serial PRIMARY KEY, name text NOT NULL)")
            cur.executemany("INSERT INTO t (name) VALUES (%s)", [("a",), ("b",), ("c",)])
            cur.execute("SELECT name FROM t ORDER BY id")
            assert [r[0] for r in cur.fetchall()] == ["a", "b", "c"]
            cur.execute("SHOW listen_addresses")
            assert cur.fetchone()[0] == "127.0.0.1"
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            assert cur.fetchone()[0] is False  # the URL's role is no superuser
            cur.execute("DROP TABLE t")
    conn.close()
    # A wrong password is refused: TCP connections authenticate.
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host=u.host, port=u.port, user=u.username, password="wrong", dbname=u.database)


WORKER = textwrap.dedent(
    """
    import sys, time, optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(sys.argv[1], heartbeat_interval=1, grace_period=3)
    study = optuna.load_study(study_name="pg-fixture", storage=storage)
    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        time.sleep(0.2)  # let the two workers' trials overlap
        return (x - 2) ** 2
    study.optimize(objective, n_trials=3)
    """
)


def test_optuna_study_from_two_processes(postgres_url):  # noqa: F811
    import optuna

    storage = optuna.storages.RDBStorage(postgres_url, heartbeat_interval=1, grace_period=3)
    optuna.create_study(study_name="pg-fixture", storage=storage, direction="minimize")
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, postgres_url], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    for w in workers:
        out, _ = w.communicate(timeout=120)
        assert w.returncode == 0, out

    study = optuna.load_study(study_name="pg-fixture", storage=storage)
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) >= 5
    numbers = [t.number for t in study.get_trials(deepcopy=False)]
    assert len(numbers) == len(set(numbers)) == 6
    assert all(t.value is not None and t.value >= 0 for t in done)
