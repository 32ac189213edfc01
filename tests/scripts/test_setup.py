"""scripts/setup, run against fakes: a fake apt-get and dpkg-query
(SLUICE_APT_GET, SLUICE_DPKG_QUERY), a fake sudo in PATH and a policy file
in a temp dir (SLUICE_POLICY_RC_D), so nothing on the machine is installed,
created or removed.  Checks the policy-rc.d guard (created only if absent,
only around the install, removed on success, failure and interrupt; an
existing one never touched) and what the script prints.

    /usr/bin/python3 -m pytest -q tests/scripts
"""
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup"
REAL_POLICY = Path("/usr/sbin/policy-rc.d")
BASE = ["meson", "ninja-build", "gcc", "libc6-dev", "pkg-config", "libev-dev",
        "libinih-dev", "libc-ares-dev", "liburing-dev", "socat", "iproute2", "procps"]

# apt-get stand-in: logs its arguments; on `install` records what the policy
# file looks like at that moment, then can wait, fail or replace the file.
FAKE_APT = r"""#!/bin/sh
echo "apt-get $*" >>"$FAKE_LOG"
[ "$1" = update ] && exit "${FAKE_UPDATE_RC:-0}"
if [ "$1" = install ]; then
    if [ -e "$SLUICE_POLICY_RC_D" ]; then
        { printf 'policy present mode=%s: ' "$(stat -c %a "$SLUICE_POLICY_RC_D")"
          "$SLUICE_POLICY_RC_D"; echo "exit=$?"; } >>"$FAKE_LOG" 2>&1
    else
        echo "policy absent" >>"$FAKE_LOG"
    fi
    [ -n "${FAKE_REPLACE:-}" ] && printf '%s' "$FAKE_REPLACE" >"$SLUICE_POLICY_RC_D"
    if [ -n "${FAKE_WAIT:-}" ]; then
        : >"$FAKE_WAIT"
        sleep 30
    fi
    exit "${FAKE_INSTALL_RC:-0}"
fi
exit 0
"""

# dpkg-query stand-in: a package is installed if it is listed in FAKE_INSTALLED.
FAKE_DPKG_QUERY = r"""#!/bin/sh
for p in $FAKE_INSTALLED; do
    [ "$p" = "$3" ] && { printf installed; exit 0; }
done
echo "dpkg-query: no packages found matching $3" >&2
exit 1
"""

FAKE_SUDO = '#!/bin/sh\nexec "$@"\n'


def snapshot(path):
    """(bytes, mode, mtime_ns) of path, or None if it does not exist."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return None
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns


@pytest.fixture(scope="module", autouse=True)
def real_policy_untouched():
    """Whatever these tests do, the machine's own policy-rc.d stays as it was."""
    before = snapshot(REAL_POLICY)
    yield
    assert snapshot(REAL_POLICY) == before


class Fake:
    def __init__(self, tmp):
        self.tmp = tmp
        bindir = tmp / "bin"
        bindir.mkdir()
        for name, text in (("apt-get", FAKE_APT), ("dpkg-query", FAKE_DPKG_QUERY),
                           ("sudo", FAKE_SUDO)):
            f = bindir / name
            f.write_text(text)
            f.chmod(0o755)
        self.policy = tmp / "policy-rc.d"
        self.log = tmp / "apt.log"
        self.env = dict(os.environ,
                        PATH=f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                        SLUICE_POLICY_RC_D=str(self.policy),
                        SLUICE_APT_GET=str(bindir / "apt-get"),
                        SLUICE_DPKG_QUERY=str(bindir / "dpkg-query"),
                        FAKE_LOG=str(self.log),
                        FAKE_INSTALLED="")

    def run(self, *args, timeout=30, **env):
        e = dict(self.env, **env)
        return subprocess.run([str(SETUP), *args], env=e, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def apt_calls(self):
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def fake(tmp_path):
    return Fake(tmp_path)


def test_absent_policy_created_for_the_install_and_removed(fake):
    r = fake.run("haproxy", FAKE_INSTALLED="meson gcc")
    assert r.returncode == 0, r.stdout + r.stderr
    missing = [p for p in BASE if p not in ("meson", "gcc")] + ["haproxy"]
    assert fake.apt_calls() == [
        "apt-get update",
        "apt-get install -y " + " ".join(missing),
        "policy present mode=755: exit=101",
    ]
    assert not fake.policy.exists()
    assert f"created {fake.policy}" in r.stdout
    assert f"removed {fake.policy} again" in r.stdout


def test_policy_removed_when_the_install_fails(fake):
    r = fake.run("haproxy", FAKE_INSTALL_RC="100")
    assert r.returncode == 100, r.stdout + r.stderr
    assert "policy present mode=755: exit=101" in fake.apt_calls()
    assert not fake.policy.exists()


def test_policy_removed_when_apt_get_update_fails(fake):
    r = fake.run(FAKE_UPDATE_RC="100")
    assert r.returncode == 100, r.stdout + r.stderr
    assert fake.apt_calls() == ["apt-get update"]
    assert not fake.policy.exists()


def default_signals():
    """A shell started in the background (CI, `cmd &`) inherits SIGINT
    ignored, and bash cannot trap a signal ignored at entry: give the script
    the signals a terminal would."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_policy_removed_when_interrupted(fake, sig):
    started = fake.tmp / "installing"
    p = subprocess.Popen([str(SETUP), "nginx"], env=dict(fake.env, FAKE_WAIT=str(started)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         stdin=subprocess.DEVNULL, start_new_session=True,
                         preexec_fn=default_signals)
    try:
        deadline = time.monotonic() + 20
        while not started.exists():
            assert p.poll() is None, p.stdout.read()
            assert time.monotonic() < deadline, "the fake install never started"
            time.sleep(0.05)
        assert fake.policy.exists()
        os.killpg(p.pid, sig)  # as Ctrl-C or a kill of the job would
        out, _ = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode != 0, out
    assert not fake.policy.exists(), out


@pytest.mark.parametrize("content, mode, says", [
    ("#!/bin/sh\n# the image's own\nexit 101\n", 0o755, "left as it is"),
    ("#!/bin/sh\nexit 0\n", 0o755, "does not simply exit 101"),
    ("#!/bin/sh\nexit 101\n", 0o644, "does not simply exit 101"),
])
def test_existing_policy_never_modified_or_removed(fake, content, mode, says):
    fake.policy.write_text(content)
    fake.policy.chmod(mode)
    os.utime(fake.policy, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    before = snapshot(fake.policy)
    for rc in ("0", "100"):
        r = fake.run("haproxy", FAKE_INSTALL_RC=rc)
        assert r.returncode == int(rc), r.stdout + r.stderr
        assert says in r.stdout + r.stderr
        assert "created" not in r.stdout and "removed" not in r.stdout
        assert snapshot(fake.policy) == before


def test_policy_replaced_during_the_install_is_left_alone(fake):
    r = fake.run(FAKE_REPLACE="#!/bin/sh\n# someone else's\nexit 0\n")
    assert r.returncode == 0, r.stdout + r.stderr
    assert fake.policy.read_text() == "#!/bin/sh\n# someone else's\nexit 0\n"
    assert "changed by someone else" in r.stderr


def test_nothing_installed_when_all_present(fake):
    r = fake.run("haproxy", "nftables", FAKE_INSTALLED=" ".join(BASE + ["haproxy", "nftables"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert fake.apt_calls() == []  # not even apt-get update
    assert not fake.policy.exists()
    assert f"all {len(BASE) + 2} packages present, nothing to install" in r.stdout


def test_package_list_printed_before_installing(fake):
    r = fake.run("python3-pytest", "haproxy", "gcc", "python3-pytest",
                 FAKE_INSTALLED="meson haproxy")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    # The base set first, then the extras, each once.
    assert lines[0] == "setup: needs " + " ".join(BASE + ["python3-pytest", "haproxy"])
    want_missing = [p for p in BASE if p != "meson"] + ["python3-pytest"]
    assert lines[1] == "setup: missing " + " ".join(want_missing)
    assert lines.index(lines[1]) < next(i for i, x in enumerate(lines) if "installing" in x)


def test_alone_installs_only_the_base_set(fake):
    r = fake.run()
    assert r.returncode == 0, r.stdout + r.stderr
    assert fake.apt_calls()[1] == "apt-get install -y " + " ".join(BASE)


def test_dry_run_changes_nothing(fake):
    r = fake.run("--dry-run", "haproxy")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "missing " in r.stdout and "haproxy" in r.stdout
    assert fake.apt_calls() == []
    assert not fake.policy.exists()


def test_unknown_option_is_refused(fake):
    r = fake.run("--frobnicate")
    assert r.returncode == 2
    assert fake.apt_calls() == []
