"""Fixtures for the sluice integration tests (see sluicetest.py)."""

import pytest

import sluicetest as st


def pytest_configure(config):
    # Also registered in pytest.ini; repeated here so the markers are known
    # when the suite is collected from a parent directory with its own ini.
    config.addinivalue_line("markers", "threaded: exercises several worker threads (workers > 1)")
    config.addinivalue_line("markers", "heavy: slow, data-heavy tests (integrity, backpressure)")


@pytest.fixture(scope="session", autouse=True)
def _binary_present():
    b = st.sluice_bin()
    if not b.is_file():
        pytest.fail(f"sluice binary not found at {b}: build it (ninja -C build) or set SLUICE_BIN",
                    pytrace=False)


@pytest.fixture
def port():
    """A free port for sluice's listener."""
    return st.free_port()


@pytest.fixture
def backend():
    """backend(handler, name=None) -> started st.Server; closed at teardown."""
    made = []

    def make(handler, name=None, **kw):
        srv = st.Server(handler, name=name, **kw)
        made.append(srv)
        return srv

    yield make
    for srv in made:
        srv.close()


@pytest.fixture
def named(backend):
    """named('a') -> a backend that sends b'a\\n' then echoes."""
    def make(name, **kw):
        return backend(st.named_handler(name), name=name, **kw)
    return make


@pytest.fixture
def closed_port():
    made = []

    def make():
        p = st.ClosedPort()
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def black_hole():
    made = []

    def make():
        h = st.BlackHole()
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def sluice(tmp_path):
    """sluice(config_text, name='sluice', wait=True, nofile=None) -> started st.Sluice.

    At teardown every instance still running is killed (by its PID) and the
    log is checked for sanitizer reports."""
    made = []

    def start(config_text, name="sluice", wait=True, **kw):
        s = st.Sluice(tmp_path, config_text, name=name, **kw)
        made.append(s)
        s.start(wait=wait)
        return s

    yield start
    reports = []
    for s in made:
        if s.alive():
            s.kill()
        reports += [f"{s.name}: {line}" for line in s.sanitizer_reports()]
    if reports:
        pytest.fail("sanitizer reports in sluice's stderr:\n" + "\n".join(reports[:40]), pytrace=False)


@pytest.fixture(params=["copy", "splice", "uring"])
def relay(request):
    """Every relay mode: user-space block chains, zero-copy splice, and
    io_uring (skipped where the binary or the kernel cannot run it)."""
    if request.param == "uring":
        why = st.uring_unavailable()
        if why:
            pytest.skip(f"relay = uring: {why}")
    return request.param
