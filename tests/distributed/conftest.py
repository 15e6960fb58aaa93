import signal

import pytest


@pytest.fixture(autouse=True)
def no_hang(request):
    """Fail instead of hanging if a process never finishes or reports (the suite has no pytest-timeout); a test
    module sets HANG_LIMIT_S to its own limit."""
    limit = getattr(request.module, "HANG_LIMIT_S", 180)

    def expire(signum, frame):
        raise TimeoutError(f"{request.module.__name__} test took longer than {limit} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(limit)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
