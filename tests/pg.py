"""A throwaway PostgreSQL server for tests.

    from pg import postgres_url  # noqa: F401   (a session fixture; yields the URL)

or, outside pytest fixtures, ``with postgres_server() as url: ...``.

The server runs from the installed binaries (``pg_config --bindir``, else the newest
/usr/lib/postgresql/*/bin) in a fresh temporary directory, on a free port, listening on
127.0.0.1 only; the unix socket lives in that private directory. ``initdb`` refuses to run
as root, so as root everything server-side runs as the ``postgres`` OS user (via runuser
or su); as any other user it runs as that user. The URL carries role ``nnopt`` with a
random password (scram-sha-256 over TCP) and database ``nnopt``; the unix socket (trust auth)
is reachable only by the server's OS user and root. Durability is switched
off (fsync etc.) since the data are thrown away.

If the server cannot be started here the tests that use it are skipped, except when the
CI environment variable is set: then they fail, so CI cannot skip them silently.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROLE = DATABASE = "nnopt"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str):
    if _in_ci():
        pytest.fail(f"PostgreSQL test server unavailable: {reason} (CI is set, so this fails instead of skipping)")
    pytest.skip(f"PostgreSQL test server unavailable: {reason}")


def _version_key(path: str):
    name = Path(path).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(p) if p.isdigit() else -1 for p in name.split("."))


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and psql, or None."""
    candidates = []
    if shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0:
                candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for cand in candidates:
        if all((Path(cand) / tool).is_file() for tool in ("initdb", "pg_ctl", "psql")):
            return Path(cand)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_user_runner():
    """(run, user): run(args, **kw) runs a command as the server's OS user; user is None when that is us."""
    prefix: list[str] = []
    user = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and there is no 'postgres' OS user to run initdb as")
        if shutil.which("runuser"):
            prefix = ["runuser", "-u", "postgres", "--"]
        elif not shutil.which("su"):
            _unavailable("running as root and neither runuser nor su is available to become 'postgres'")

    def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
        if user is not None and not prefix:  # su takes one string; -s: postgres' shell may be nologin
            args = ["su", "-s", "/bin/sh", "postgres", "-c", shlex.join(args)]
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 60)
        return subprocess.run(prefix + args, **kwargs)

    return run, user


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a private PostgreSQL server; yield its SQLAlchemy/Optuna URL; stop it and delete its files."""
    bindir = find_bindir()
    if bindir is None:
        _unavailable("no PostgreSQL server binaries (initdb, pg_ctl, psql); on Debian: apt-get install postgresql")
    run, user = _server_user_runner()

    # Mode 0700, so only its owner (and root) can reach the data and the unix socket. Under /tmp, not
    # $TMPDIR: the postgres user must be able to reach it, and a socket path has at most ~100 bytes.
    root = Path(tempfile.mkdtemp(prefix="nnopt-pg-", dir="/tmp" if os.path.isdir("/tmp") else None))
    data, log = root / "data", root / "server.log"
    started = False
    try:
        if user is not None:
            os.chown(root, user.pw_uid, user.pw_gid)
        password = secrets.token_hex(16)  # hex: nothing to quote in SQL or URLs
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        _check(
            run(
                [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C",
                 "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "--no-instructions"],
                env=env,
            ),
            "initdb",
        )
        # Socket connections are trusted: the socket sits in the private 0700 directory. TCP needs passwords.
        for _ in range(3):  # the free port can be taken between choosing it and binding it
            port = _free_port()
            opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            proc = run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w", "-t", "30",
                        "start"], env=env)
            if proc.returncode == 0:
                started = True
                break
        if not started:
            raise RuntimeError(f"pg_ctl start failed:\n{proc.stdout}\n{proc.stderr}\n{_tail(log)}")
        sql = (f"CREATE ROLE {ROLE} LOGIN PASSWORD '{password}';\n"
               f"CREATE DATABASE {DATABASE} OWNER {ROLE};\n")
        # The password goes in on stdin, never on a command line others could read in `ps`.
        _check(
            run([str(bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(root), "-p", str(port),
                 "-U", "postgres", "-d", "postgres"], input=sql, env=env),
            "creating role and database",
        )
        yield f"postgresql+psycopg2://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"
    finally:
        if started:
            stop = run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop"])
            if stop.returncode != 0:
                run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(root, ignore_errors=True)


def _tail(path: Path, n: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a private PostgreSQL server (role and database ``nnopt``), shared by the whole session."""
    with postgres_server() as url:
        yield url
