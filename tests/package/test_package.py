"""The Debian package built by scripts/package: its files, conffiles and
maintainer scripts, the extracted binary accepting the shipped config, the
unit passing systemd-analyze verify, and lintian finding no errors.

    scripts/package
    SLUICE_DEB=build-deb/sluice_0.1.0_amd64.deb /usr/bin/python3 -m pytest -q tests/package

Without SLUICE_DEB the newest build-deb/sluice_*.deb is used, if any.
Nothing is installed: the package is only inspected and extracted.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

FILES = [
    "usr/sbin/sluice",
    "usr/sbin/sluicectl",
    "etc/sluice/sluice.ini",
    "etc/logrotate.d/sluice",
    "etc/default/sluice",
    "lib/systemd/system/sluice.service",
    "usr/share/man/man8/sluice.8.gz",
    "usr/share/man/man8/sluicectl.8.gz",
    "usr/share/man/man5/sluice.ini.5.gz",
    "usr/share/doc/sluice/copyright",
    "usr/share/doc/sluice/changelog.gz",
    "usr/share/doc/sluice/operations.md.gz",
    "usr/share/doc/sluice/config.md.gz",
]

CONFFILES = ["/etc/sluice/sluice.ini", "/etc/logrotate.d/sluice", "/etc/default/sluice"]


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 60), **kw)


@pytest.fixture(scope="module")
def deb():
    path = os.environ.get("SLUICE_DEB")
    if not path:
        built = sorted((REPO / "build-deb").glob("sluice_*.deb"), key=lambda p: p.stat().st_mtime)
        if not built:
            pytest.skip("no package: run scripts/package, then set SLUICE_DEB")
        path = built[-1]
    path = Path(path).resolve()
    assert path.is_file(), f"SLUICE_DEB={path}: no such file"
    return path


@pytest.fixture(scope="module")
def tree(deb, tmp_path_factory):
    """The package's files, extracted (dpkg-deb -x)."""
    root = tmp_path_factory.mktemp("deb") / "root"
    r = run("dpkg-deb", "-x", deb, root)
    assert r.returncode == 0, r.stderr
    return root


@pytest.fixture(scope="module")
def control(deb, tmp_path_factory):
    """The package's control area (dpkg-deb -e)."""
    d = tmp_path_factory.mktemp("deb") / "DEBIAN"
    r = run("dpkg-deb", "-e", deb, d)
    assert r.returncode == 0, r.stderr
    return d


def test_file_list(deb):
    r = run("dpkg-deb", "-c", deb)
    assert r.returncode == 0, r.stderr
    listed = {ln.split()[-1].removeprefix("./") for ln in r.stdout.splitlines() if ln.strip()}
    missing = [f for f in FILES if f not in listed]
    assert not missing, f"not in the package: {missing}; it has {sorted(listed)}"
    # No build or test leftovers, and no /usr/local.
    assert not [f for f in listed if f.startswith("usr/local") or "/tests/" in f], sorted(listed)


def test_conffiles_and_maintainer_scripts(control):
    conffiles = (control / "conffiles").read_text().split()
    for f in CONFFILES:
        assert f in conffiles, f"{f} is not a conffile: {conffiles}"
    for script in ("postinst", "prerm", "postrm"):
        assert (control / script).is_file(), f"no {script}"
        assert os.access(control / script, os.X_OK), f"{script} not executable"
    postinst = (control / "postinst").read_text()
    assert re.search(r"adduser --system --group .*sluice", postinst, re.S), postinst
    # The user exists before debhelper's code enables and starts the unit.
    assert postinst.index("adduser") < postinst.index("deb-systemd-helper enable 'sluice.service'")
    assert "deb-systemd-invoke $_dh_action 'sluice.service'" in postinst, postinst
    postrm = (control / "postrm").read_text()
    purge = postrm[postrm.index('"$1" = "purge"'):]
    assert "rm -rf /var/log/sluice" in purge and "deluser --system" in purge, postrm
    fields = (control / "control").read_text()
    assert re.search(r"(?m)^Depends:.*\badduser\b", fields), fields
    assert re.search(r"(?m)^Version: \S+$", fields), fields


def test_version_matches_meson_build(control):
    meson = (REPO / "meson.build").read_text()
    want = re.search(r"version\s*:\s*'([^']+)'", meson).group(1)
    got = re.search(r"(?m)^Version: (\S+)$", (control / "control").read_text()).group(1)
    assert got == want, f"package version {got}, meson.build {want}"


def test_unit_and_logrotate_name_the_package_paths(tree):
    unit = (tree / "lib/systemd/system/sluice.service").read_text().splitlines()
    assert "ExecStart=/usr/sbin/sluice -c /etc/sluice/sluice.ini $SLUICE_OPTS" in unit
    assert "ExecStartPre=/usr/sbin/sluice -t -c /etc/sluice/sluice.ini $SLUICE_OPTS" in unit
    assert "ExecReload=+/usr/sbin/sluicectl -c /etc/sluice/sluice.ini reload" in unit
    assert "EnvironmentFile=-/etc/default/sluice" in unit
    rot = (tree / "etc/logrotate.d/sluice").read_text()
    body = re.sub(r"(?m)^\s*#.*\n", "", rot)
    assert re.search(r"(?m)^\s*create 0640 sluice adm$", body), body
    assert "/usr/sbin/sluicectl -c /etc/sluice/sluice.ini reopen" in body, body
    assert "|| true" not in body, body


def test_extracted_sluice_accepts_the_shipped_config(tree):
    sluice = tree / "usr/sbin/sluice"
    v = run(sluice, "-V")
    assert v.returncode == 0 and v.stdout.startswith("sluice "), v.stdout + v.stderr
    t = run(sluice, "-t", "-c", tree / "etc/sluice/sluice.ini")
    assert t.returncode == 0 and "configuration OK" in t.stdout, t.stdout + t.stderr


def test_systemd_analyze_verify(tree):
    """verify requires every Exec binary to exist, and nothing is installed
    here: the unit's /usr/sbin and /etc paths are pointed into the extracted
    tree (the rest of the text is verified as shipped), and MANPATH lets
    `man` find the Documentation= pages there."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.skip("systemd-analyze not installed")
    text = (tree / "lib/systemd/system/sluice.service").read_text()
    moved = re.sub(r"(?<![\w/])/(usr/sbin|etc)/", lambda m: f"{tree}{m.group(0)}", text)
    check = tree.parent / "verify" / "sluice.service"
    check.parent.mkdir(exist_ok=True)
    check.write_text(moved)
    man = [] if shutil.which("man") else ["--man=no"]
    env = dict(os.environ, MANPATH=str(tree / "usr/share/man"))
    r = run(analyze, "verify", *man, check, env=env)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr


def test_lintian_finds_no_errors(deb):
    lintian = shutil.which("lintian")
    if not lintian:
        pytest.skip("lintian not installed")
    r = run(lintian, "--fail-on", "error", deb, timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    # Kept warnings are explained in docs/operations.md (Installing).
    print(r.stdout)
