"""`meson install` puts the binaries, the unit, the sample config, the
logrotate snippet and the man pages where a package would, the unit and the
snippet name the configured prefix, an edited sluice.ini survives a second
install, and what it installed works."""

import json
import re
import shutil
import subprocess

import pytest

import sluicetest as st

# Paths below the install prefix (whatever prefix the build was configured with).
EXPECTED = [
    "sbin/sluice",
    "sbin/sluicectl",
    "etc/sluice/sluice.ini",
    "etc/logrotate.d/sluice",
    "lib/systemd/system/sluice.service",
    "share/man/man8/sluice.8",
    "share/man/man8/sluicectl.8",
    "share/man/man5/sluice.ini.5",
    "share/doc/sluice/config.md",
    "share/doc/sluice/operations.md",
]


def build_dir():
    build = st.sluice_bin().parent
    if not (build / "meson-private").is_dir():
        pytest.skip(f"{build} is not a meson build directory")
    return build


def meson():
    m = shutil.which("meson")
    assert m, "meson not found"
    return m


def options(build):
    """The build's configured options as {name: value}."""
    r = subprocess.run([meson(), "introspect", "--buildoptions", str(build)],
                       capture_output=True, text=True, timeout=60 * st.SLOW)
    assert r.returncode == 0, r.stdout + r.stderr
    return {o["name"]: o["value"] for o in json.loads(r.stdout)}


def paths(build):
    """Absolute installed paths the unit and the snippet must name."""
    o = options(build)
    prefix = o["prefix"]

    def absolute(p):
        return p if p.startswith("/") else f"{prefix.rstrip('/')}/{p}"

    sysconfdir = absolute(o["sysconfdir"])
    unitdir = o.get("systemdunitdir") or f"{prefix.rstrip('/')}/lib/systemd/system"
    return {
        "sbindir": absolute(o["sbindir"]),
        "sysconfdir": sysconfdir,
        "conf": f"{sysconfdir}/sluice/sluice.ini",
        "unitdir": unitdir,
        "service_user": o.get("service_user", "sluice"),
        "log_group": o.get("log_group", "adm"),
    }


def install(build, dest):
    r = subprocess.run([meson(), "install", "-C", str(build), "--no-rebuild", "--destdir", str(dest)],
                       capture_output=True, text=True, timeout=120 * st.SLOW)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    build = build_dir()
    dest = tmp_path_factory.mktemp("install") / "root"
    install(build, dest)
    return build, dest, paths(build)


def check_config(sbin, ini):
    """sluice -t on the installed sample config passes."""
    t = subprocess.run([str(sbin), "-t", "-c", str(ini)], capture_output=True, text=True,
                       timeout=30 * st.SLOW)
    assert t.returncode == 0 and "configuration OK" in t.stdout, t.stdout + t.stderr


def test_meson_install_layout_and_installed_binary_works(installed):
    build, dest, p = installed
    files = {f.relative_to(dest).as_posix() for f in dest.rglob("*") if f.is_file()}
    missing = [e for e in EXPECTED if not any(("/" + i).endswith("/" + e) for i in files)]
    assert not missing, f"not installed: {missing}; installed: {sorted(files)}"

    sbin = dest / p["sbindir"].lstrip("/") / "sluice"
    v = subprocess.run([str(sbin), "-V"], capture_output=True, text=True, timeout=30 * st.SLOW)
    assert v.returncode == 0 and v.stdout.startswith("sluice "), v.stdout + v.stderr
    ctl = dest / p["sbindir"].lstrip("/") / "sluicectl"
    h = subprocess.run([str(ctl), "-h"], capture_output=True, text=True, timeout=30 * st.SLOW)
    assert h.returncode == 0 and "usage" in (h.stdout + h.stderr).lower(), h.stdout + h.stderr
    check_config(sbin, dest / p["conf"].lstrip("/"))


def test_unit_names_the_installed_paths(installed):
    build, dest, p = installed
    unit = (dest / p["unitdir"].lstrip("/") / "sluice.service").read_text()
    assert "@" not in re.sub(r"(?m)^#.*$", "", unit), "unsubstituted @VAR@ in the unit"
    sluice, ctl, conf = f"{p['sbindir']}/sluice", f"{p['sbindir']}/sluicectl", p["conf"]
    lines = unit.splitlines()
    assert "Type=notify" in lines
    assert f"ExecStartPre={sluice} -t -c {conf} $SLUICE_OPTS" in lines
    assert f"ExecStart={sluice} -c {conf} $SLUICE_OPTS" in lines
    # A reload checks the file, then waits for sluice to apply it: either
    # step failing fails `systemctl reload`.
    reload = [ln for ln in lines if ln.startswith("ExecReload=")]
    assert reload == [f"ExecReload={sluice} -t -c {conf} $SLUICE_OPTS",
                      f"ExecReload=+{ctl} -c {conf} reload"], reload
    assert f"EnvironmentFile=-{p['sysconfdir']}/default/sluice" in lines
    assert "Documentation=man:sluice(8) man:sluice.ini(5) man:sluicectl(8)" in lines


def test_logrotate_snippet(installed):
    build, dest, p = installed
    text = (dest / p["sysconfdir"].lstrip("/") / "logrotate.d" / "sluice").read_text()
    body = re.sub(r"(?m)^\s*#.*\n", "", text)
    assert "|| true" not in body, "postrotate must not hide a failed reopen"
    assert "@" not in body, "unsubstituted @VAR@ in the logrotate snippet"
    assert re.search(rf"(?m)^\s*create 0640 {re.escape(p['service_user'])} "
                     rf"{re.escape(p['log_group'])}$", body), body
    assert f"{p['sbindir']}/sluicectl -c {p['conf']} reopen" in body, body
    assert "systemctl -q is-active sluice.service" in body, body


def test_second_install_keeps_an_edited_config(tmp_path):
    build = build_dir()
    p = paths(build)
    dest = tmp_path / "root"
    install(build, dest)
    conf = dest / p["conf"].lstrip("/")
    example = conf.with_name("sluice.ini.example")
    assert conf.is_file() and not example.exists()
    sample = conf.read_text()
    edited = sample.replace("bind = 127.0.0.1:8080", "bind = 127.0.0.1:8081")
    assert edited != sample, "the sample no longer binds 127.0.0.1:8080: update this test"
    conf.write_text(edited)

    install(build, dest)
    assert conf.read_text() == edited, "a second meson install overwrote an edited sluice.ini"
    assert example.read_text() == sample, "the new sample should be sluice.ini.example"


def test_systemd_analyze_verify(installed):
    """systemd-analyze verify accepts the unit. It checks that every Exec
    binary exists and is executable, and these live under DESTDIR, so the
    installed paths are pointed into the install root first (the text is
    otherwise verified as is); --man=no because the man pages are not
    installed on this machine."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    build, dest, p = installed
    unit = (dest / p["unitdir"].lstrip("/") / "sluice.service").read_text()
    moved = re.sub("|".join(re.escape(d) for d in (p["sbindir"], p["sysconfdir"])),
                   lambda m: f"{dest}{m.group(0)}", unit)
    check = dest.parent / "verify" / "sluice.service"
    check.parent.mkdir(exist_ok=True)
    check.write_text(moved)
    r = subprocess.run([analyze, "verify", "--man=no", str(check)], capture_output=True,
                       text=True, timeout=60 * st.SLOW)
    # Unknown keys and bad values are only warnings (exit 0): none allowed.
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
