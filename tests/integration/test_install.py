"""`meson install` puts the binaries, the unit, the sample config, the
logrotate snippet and the man pages where a package would, and what it
installed works."""

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


def test_meson_install_layout_and_installed_binary_works(tmp_path):
    build = st.sluice_bin().parent
    if not (build / "meson-private").is_dir():
        pytest.skip(f"{build} is not a meson build directory")
    meson = shutil.which("meson")
    assert meson, "meson not found"
    dest = tmp_path / "root"
    r = subprocess.run([meson, "install", "-C", str(build), "--no-rebuild", "--destdir", str(dest)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

    installed = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()}
    missing = [e for e in EXPECTED if not any(i.endswith("/" + e) for i in installed)]
    assert not missing, f"not installed: {missing}; installed: {sorted(installed)}"

    sbin = next(dest.rglob("sbin/sluice"))
    v = subprocess.run([str(sbin), "-V"], capture_output=True, text=True, timeout=30)
    assert v.returncode == 0 and v.stdout.startswith("sluice "), v.stdout + v.stderr
    ini = next(dest.rglob("etc/sluice/sluice.ini"))
    t = subprocess.run([str(sbin), "-t", "-c", str(ini)], capture_output=True, text=True,
                       timeout=30)
    assert t.returncode == 0 and "configuration OK" in t.stdout, t.stdout + t.stderr
    ctl = next(dest.rglob("sbin/sluicectl"))
    h = subprocess.run([str(ctl), "-h"], capture_output=True, text=True, timeout=30)
    assert h.returncode == 0 and "usage" in (h.stdout + h.stderr).lower(), h.stdout + h.stderr
    unit = next(dest.rglob("systemd/system/sluice.service")).read_text()
    assert "Type=notify" in unit and "ExecReload=" in unit
