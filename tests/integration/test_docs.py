"""The documentation tells the truth about the config file:

* every configuration shown in README.md, docs/*.md and the man pages'
  EXAMPLE sections passes `sluice -t`, as root and as an unprivileged
  user. A fragment is completed the least possible way: server lines
  alone go into a pool, a pool a listener names but the block lacks is
  added with one server, and a block without a listener gets one;
* the keys of docs/config.md's tables, of etc/sluice.ini (set or shown
  commented out) and of the parser's own table (`sluice -T`) agree."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

import sluicetest as st

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
MAN_FILES = sorted((ROOT / "docs" / "man").glob("*.[58]"))
SECTIONS = ("global", "listener", "pool")


def markdown_ini_blocks(path):
    text = path.read_text()
    for m in re.finditer(r"^```ini\n(.*?)^```", text, re.S | re.M):
        line = text.count("\n", 0, m.start()) + 1
        yield f"{path.relative_to(ROOT)}:{line}", m.group(1)


def man_examples(path):
    """The .nf/.fi blocks of a man page's EXAMPLE section that look like INI."""
    text = path.read_text()
    for m in re.finditer(r"^\.SH EXAMPLES?\n(.*?)(?=^\.SH |\Z)", text, re.S | re.M):
        for b in re.finditer(r"^\.nf\n(.*?)^\.fi", m.group(1), re.S | re.M):
            body = b.group(1).replace("\\e", "\\").replace("\\-", "-")
            if re.search(r"^\[(global|listener|pool)", body, re.M):
                line = text.count("\n", 0, m.start() + b.start()) + 1
                yield f"{path.relative_to(ROOT)}:{line}", body


def examples():
    out = []
    for p in DOC_FILES:
        out += list(markdown_ini_blocks(p))
    for p in MAN_FILES:
        out += list(man_examples(p))
    out.append(("etc/sluice.ini", (ROOT / "etc" / "sluice.ini").read_text()))
    return out


EXAMPLES = examples()

FRAGMENT_TAIL = """
[listener doc_fragment_tail]
bind = 127.0.0.1:1
pool = doc_fragment_tail

[pool doc_fragment_tail]
server = tail 127.0.0.1:9
"""


def complete_fragment(text):
    if not re.search(r"^\s*\[", text, re.M):
        text = "[pool doc_fragment]\n" + text
    for name in re.findall(r"^\s*pool\s*=\s*(\S+)", text, re.M):
        if not re.search(rf"^\s*\[pool {re.escape(name)}\]", text, re.M):
            text += f"\n[pool {name}]\nserver = tail 127.0.0.1:9\n"
    if not re.search(r"^\s*\[listener ", text, re.M):
        text += FRAGMENT_TAIL
    return text


@pytest.fixture(scope="module")
def example_dir():
    # Readable by the unprivileged user too.
    d = Path(tempfile.mkdtemp(prefix="sldocs", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_there_are_examples():
    where = {w.split(":")[0] for w, _ in EXAMPLES}
    assert {"README.md", "docs/config.md", "docs/man/sluice.ini.5", "etc/sluice.ini"} <= where, where


def run_check(path, as_user):
    cmd = [str(st.sluice_bin()), "-t", "-c", str(path)]
    if as_user:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"] + cmd
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30 * st.SLOW,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("where,text", EXAMPLES, ids=[w for w, _ in EXAMPLES])
def test_example_passes_check(example_dir, where, text):
    text = complete_fragment(text)
    # List files an example names by a relative path (relative to the
    # config file's directory): made here, with one network each.
    for name in re.findall(r"^\s*(?:allow|deny)_file\s*=\s*([^/\s]\S*)", text, re.M):
        (example_dir / name).write_text("# made by test_docs\n192.0.2.0/24\n")
        (example_dir / name).chmod(0o644)
    path = example_dir / (re.sub(r"[^A-Za-z0-9]+", "_", where) + ".ini")
    path.write_text(text)
    path.chmod(0o644)
    runs = [False]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to check as an unprivileged user")
        runs = [False, True]  # as root, then as nobody
    for as_user in runs:
        r = run_check(path, as_user)
        who = "nobody" if as_user else ("root" if os.geteuid() == 0 else "this user")
        assert r.returncode == 0 and "configuration OK" in r.stdout, \
            f"{where}: sluice -t as {who} failed:\n{r.stderr}\n--- the example:\n{text}"


# ---- the keys agree ----

def documented_keys():
    """{section: {key}} from the key tables of docs/config.md."""
    text = (ROOT / "docs" / "config.md").read_text()
    out = {}
    for sec in SECTIONS:
        m = re.search(rf"^## \[{sec}( NAME)?\]\n(.*?)(?=^## )", text, re.S | re.M)
        assert m, f"docs/config.md has no ## [{sec}] section"
        out[sec] = set(re.findall(r"^\| `([a-z_]+)` \|", m.group(2), re.M))
        # The balance values table (`roundrobin` ...) is not a key table.
        out[sec] -= {"roundrobin", "leastconn", "random", "source", "first"}
    return out


def sample_keys():
    """{section: {key}} set or shown commented out in etc/sluice.ini."""
    out = {sec: set() for sec in SECTIONS}
    sec = None
    for line in (ROOT / "etc" / "sluice.ini").read_text().splitlines():
        m = re.match(r"^\s*\[(global|listener|pool)\b", line)
        if m:
            sec = m.group(1)
            continue
        m = re.match(r"^\s*;?\s*([a-z_]+) = ", line)
        if m and sec:
            out[sec].add(m.group(1))
    return out


def parser_keys(tmp_path):
    """{section: {key}} of the parser's table, from sluice -T of a file that
    sets the keys -T only prints when set (and a route = sni listener, for
    sni and sni_default)."""
    cfg = tmp_path / "all.ini"
    cfg.write_text(st.make_config(st.free_port(), ["a 127.0.0.1:9"],
                                  glob={"user": "nobody", "resolvers": "127.0.0.1:53"},
                                  listener={"bind_owner": "nobody", "allow": "127.0.0.1",
                                            "deny": "all", "allow_file": "list.txt",
                                            "deny_file": "list.txt"},
                                  pool={"check": "send-expect", "check_send": "x",
                                        "check_expect": "y"})
                   + f"\n[listener tls]\nbind = 127.0.0.1:{st.free_port()}\nroute = sni\n"
                     "sni = a.example main\nsni_default = main\n")
    (tmp_path / "list.txt").write_text("192.0.2.0/24\n")
    r = st.run_sluice(["-T", "-c", cfg])
    assert r.returncode == 0, r.stderr
    out = {sec: set() for sec in SECTIONS}
    sec = None
    for line in r.stdout.splitlines():
        m = re.match(r"^\[(global|listener|pool)\b", line)
        if m:
            sec = m.group(1)
        m = re.match(r"^([a-z_]+) = ", line)
        if m and sec:
            out[sec].add(m.group(1))
    return out


def test_documented_sample_and_parser_keys_agree(tmp_path):
    docs, sample, parser = documented_keys(), sample_keys(), parser_keys(tmp_path)
    for sec in SECTIONS:
        assert docs[sec] == parser[sec], \
            f"[{sec}]: docs/config.md lacks {parser[sec] - docs[sec]}, " \
            f"documents unknown {docs[sec] - parser[sec]}"
        assert sample[sec] == parser[sec], \
            f"[{sec}]: etc/sluice.ini lacks {parser[sec] - sample[sec]}, " \
            f"has unknown {sample[sec] - parser[sec]}"
    for must in ("send_proxy", "accept_proxy", "proxy_timeout", "pid_file"):
        assert any(must in parser[s] for s in SECTIONS), must


# ---- end reasons ----

def reasons_in_table(path, heading):
    text = path.read_text()
    m = re.search(rf"^#+ {heading}\n(.*?)(?=^#)", text, re.S | re.M)
    assert m, f"{path.name} has no '{heading}' section"
    return set(re.findall(r"^\| `([a-z_]+)` \|", m.group(1), re.M))


def test_end_reasons_documented(sluice, port, tmp_path):
    """Every end reason sluice counts (show stats json's end_reasons) is in
    docs/operations.md's End reasons table and architecture.md's, and
    nothing else is."""
    import ctltest as ct  # noqa: E402  (only this test needs the admin socket)
    d = Path(tempfile.mkdtemp(prefix="slr", dir="/tmp"))
    try:
        sock = str(d / "admin.sock")
        s = sluice(st.make_config(port, ["a 127.0.0.1:9"], glob={"admin_socket": sock}))
        counted = set(ct.stats_json(sock)["process"]["end_reasons"])
        s.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert {"tls_hello", "no_route", "proxy_header"} <= counted, counted
    for path in (ROOT / "docs" / "operations.md", ROOT / "docs" / "architecture.md"):
        documented = reasons_in_table(path, "End reasons")
        assert documented == counted, \
            f"{path.name}: lacks {counted - documented}, documents unknown {documented - counted}"
