"""sluicectl top: the live view in a real terminal (a detached tmux session
of fixed size: keys change the sort, a resize redraws to fit, q and signals
restore the terminal) and `--once`, the plain frame for scripts."""

import os
import re
import shutil
import signal
import subprocess

import pytest

import ctltest as ct
from ctltest import sockdir  # noqa: F401  (fixture)
import sluicetest as st

T = 10.0 * st.SLOW


def start(sluice, named, port, sockdir):
    """sluice with listener main -> pool main (server aa) and listener second
    -> pool other (server zz), two sessions held on zz: by sessions zz sorts
    first, by name aa does."""
    aa, zz = named("aa"), named("zz")
    sock = sockdir / "admin.sock"
    port2 = st.free_port()
    s = sluice(ct.ctl_config(port, [f"aa {aa.addr}"], sock=sock,
                             extra_listeners=[("second", port2, "other")],
                             extra_pools=[("other", [f"zz {zz.addr}"], {})]))
    held = [ct.hold(port2)[0] for _ in range(2)]
    st.wait_for(lambda: ct.server_stats(sock, "other", "zz")["active"] == 2, T,
                "two sessions on other/zz")
    return s, sock, held


# --------------------------------------------------------------------------
# --once


def test_once_prints_one_plain_frame(sluice, named, port, sockdir):
    s, sock, held = start(sluice, named, port, sockdir)
    ct.pick(port)
    r = ct.run_ctl(sock, "top", "--once", "-d", "0.2")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "\x1b" not in out, f"escape codes in --once output: {out!r}"
    lines = out.splitlines()
    assert lines[0].startswith("sluice ") and " pid " in lines[0], lines[0]
    assert lines[1] == "sort: sessions", lines[1]
    head = lines.index(next(ln for ln in lines if ln.startswith("SERVER")))
    assert lines[head].split() == ["SERVER", "STATE", "ACTIVE", "NEW/S", "IN/S", "OUT/S",
                                   "ERR/S", "QUEUE", "P99CONN"], lines[head]
    rows = {ln.split()[0]: ln.split() for ln in lines[head + 1:] if ln.strip()}
    assert list(rows) == ["other/zz", "main/aa"], out  # by active sessions
    assert rows["other/zz"][1] == "up" and rows["other/zz"][2] == "2", out
    # Rates over one interval: numbers, not "-".
    assert re.fullmatch(r"[0-9.]+[KMGTPE]?", rows["main/aa"][3]), out
    listeners = [ln.split()[0] for ln in lines[3:head] if ln.strip()]
    assert listeners[0] == "LISTENER" and sorted(listeners[1:]) == ["main", "second"], out
    by_name = ct.run_ctl(sock, "top", "--once", "-d", "0.1", "--sort", "name")
    assert by_name.returncode == 0 and "sort: name" in by_name.stdout, by_name.stderr
    names = [ln.split()[0] for ln in by_name.stdout.splitlines() if re.match(r"^\S+/\S+ ", ln)]
    assert names == ["main/aa", "other/zz"], by_name.stdout
    for c in held:
        c.close()


def test_once_errors(tmp_path, sockdir):
    r = ct.run_ctl(sockdir / "nothing.sock", "top", "--once", "-d", "0.1")
    assert r.returncode == 1 and "nothing.sock" in r.stderr, r.stderr
    for args, what in [(["-d", "0"], "-d wants seconds"), (["-d", "x"], "-d wants seconds"),
                       (["--sort", "colour"], "--sort wants"), (["extra"], "unexpected argument")]:
        r = ct.run_ctl(sockdir / "nothing.sock", "top", *args)
        assert r.returncode == 2 and what in r.stderr, (args, r.stderr)


def test_top_without_a_terminal_says_so(sluice, named, port, sockdir):
    s, sock, held = start(sluice, named, port, sockdir)
    r = ct.run_ctl(sock, "top")
    assert r.returncode == 2 and "needs a terminal" in r.stderr and "--once" in r.stderr, r.stderr
    for c in held:
        c.close()


# --------------------------------------------------------------------------
# the live view in tmux


class Tmux:
    """A private tmux server (its own socket) with one detached session."""

    def __init__(self, tmp_path, width, height, command):
        self.sock = str(tmp_path / "tmux.sock")
        self.run("new-session", "-d", "-s", "top", "-x", str(width), "-y", str(height), command)

    def run(self, *args):
        r = subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null"] + list(args),
                           capture_output=True, text=True, timeout=T)
        assert r.returncode == 0, f"tmux {args}: {r.stderr}"
        return r.stdout

    def lines(self):
        return self.run("capture-pane", "-p", "-t", "top").splitlines()

    def screen(self):
        return "\n".join(self.lines())

    def fmt(self, f):
        return self.run("display-message", "-p", "-t", "top", f).strip()

    def wait(self, cond, what):
        last = []

        def check():
            last[:] = self.lines()
            return cond(last)
        try:
            return st.wait_for(check, T, what, interval=0.05)
        except AssertionError as e:
            raise AssertionError(f"{e}; screen:\n" + "\n".join(last)) from None

    def close(self):
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, timeout=T)


@pytest.fixture
def tmux(tmp_path):
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (scripts/test installs it)")
    made = []

    def make(width, height, command):
        t = Tmux(tmp_path, width, height, command)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def saved(path):
    """Wait for the shell's `stty -g > path` to be complete (the redirect
    creates the file before stty writes it)."""
    return st.wait_for(lambda: path.exists() and path.read_text().endswith("\n"), T,
                       f"the shell to save the tty settings in {path.name}")


def server_order(lines):
    return [ln.split()[0] for ln in lines if re.match(r"^(main/aa|other/zz) ", ln)]


def top_shell(tmp_path, sock, extra=""):
    """A shell that saves the tty settings, runs top, says how it ended and
    saves the settings again (then waits to be killed)."""
    ctl = ct.sluicectl_bin()
    return (f"stty -g > {tmp_path}/before; {ctl} -s {sock} top -d 0.3 {extra}; "
            f"echo TOP-EXITED rc=$?; stty -g > {tmp_path}/after; exec sleep 600")


def test_keys_sort_resize_and_quit(sluice, named, port, sockdir, tmux, tmp_path):
    s, sock, held = start(sluice, named, port, sockdir)
    t = tmux(100, 30, top_shell(tmp_path, sock))
    t.wait(lambda ls: server_order(ls) == ["other/zz", "main/aa"] and "sort: sessions" in ls[1],
           "top sorted by sessions")
    assert t.fmt("#{alternate_on}") == "1", "top does not use the alternate screen"
    t.run("send-keys", "-t", "top", "a")
    t.wait(lambda ls: server_order(ls) == ["main/aa", "other/zz"] and "sort: name" in ls[1],
           "top sorted by name after 'a'")
    t.run("send-keys", "-t", "top", "s")
    t.wait(lambda ls: server_order(ls) == ["other/zz", "main/aa"] and "sort: sessions" in ls[1],
           "top sorted by sessions again after 's'")
    for key, name in (("n", "new/s"), ("b", "bytes/s"), ("e", "errors/s"), ("p", "p99")):
        t.run("send-keys", "-t", "top", key)
        t.wait(lambda ls, name=name: ls[1].startswith(f"sort: {name} "), f"sort {name} after {key}")
    t.run("send-keys", "-t", "top", "s")
    # Smaller: every line cut to the width (no wrapped continuation lines),
    # no more lines than the height.
    t.run("resize-window", "-t", "top", "-x", "42", "-y", "8")

    def fits(ls):
        if t.fmt("#{window_width}x#{window_height}") != "42x8":
            return False
        body = [ln for ln in ls if ln.strip()]
        return (len(ls) <= 8 and ls[0].startswith("sluice ") and ls[1].startswith("sort: ")
                and ls[2].strip() == "" and ls[3].startswith("LISTENER")
                and all(len(ln) <= 42 for ln in ls) and len(body) >= 5)
    t.wait(fits, "the frame redrawn for 42x8")
    t.run("resize-window", "-t", "top", "-x", "100", "-y", "30")
    t.wait(lambda ls: server_order(ls) == ["other/zz", "main/aa"], "the frame redrawn for 100x30")
    t.run("send-keys", "-t", "top", "q")
    t.wait(lambda ls: any("TOP-EXITED rc=0" in ln for ln in ls), "top to exit on q")
    assert t.fmt("#{alternate_on}") == "0", "alternate screen left on"
    assert t.fmt("#{cursor_flag}") == "1", "cursor left hidden"
    saved(tmp_path / "after")
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text(), \
        "tty settings not restored"
    for c in held:
        c.close()


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except FileNotFoundError:
        return []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_restores_the_terminal(sluice, named, port, sockdir, tmux, tmp_path, sig):
    s, sock, held = start(sluice, named, port, sockdir)
    t = tmux(90, 20, top_shell(tmp_path, sock))
    t.wait(lambda ls: server_order(ls) == ["other/zz", "main/aa"], "top running")
    shell = int(t.fmt("#{pane_pid}"))
    ctl = st.wait_for(lambda: [c for c in children(shell)
                               if os.readlink(f"/proc/{c}/exe").endswith("sluicectl")],
                      T, "the sluicectl process")[0]
    os.kill(ctl, sig)
    t.wait(lambda ls: any(f"TOP-EXITED rc={128 + sig}" in ln for ln in ls),
           f"top to die by signal {sig}")
    assert t.fmt("#{alternate_on}") == "0", "alternate screen left on"
    saved(tmp_path / "after")
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text(), \
        "tty settings not restored"
    for c in held:
        c.close()


def test_unreachable_sluice_is_shown_not_fatal(sluice, named, port, sockdir, tmux, tmp_path):
    """sluice going away while top runs: the status line says so, the view
    stays, q still quits."""
    s, sock, held = start(sluice, named, port, sockdir)
    t = tmux(120, 20, top_shell(tmp_path, sock))
    t.wait(lambda ls: server_order(ls) == ["other/zz", "main/aa"], "top running")
    for c in held:
        c.close()
    s.stop()
    t.wait(lambda ls: "! " in ls[1] and "admin.sock" in ls[1], "the error on the status line")
    t.run("send-keys", "-t", "top", "q")
    t.wait(lambda ls: any("TOP-EXITED rc=0" in ln for ln in ls), "top to exit on q")


def test_ctrl_z_gives_the_terminal_back(sluice, named, port, sockdir, tmux, tmp_path):
    """Ctrl-Z in an interactive shell: top leaves the alternate screen and
    restores the tty before it stops; `fg` takes the screen again."""
    if shutil.which("bash") is None:
        pytest.skip("no bash for an interactive shell with job control")
    s, sock, held = start(sluice, named, port, sockdir)
    t = tmux(100, 20, "bash --norc --noprofile -i")
    t.wait(lambda ls: any(ln.strip().endswith(("$", "#")) for ln in ls), "the shell prompt")
    t.run("send-keys", "-t", "top", f"stty -g > {tmp_path}/before", "Enter")
    saved(tmp_path / "before")
    t.run("send-keys", "-t", "top", f"{ct.sluicectl_bin()} -s {sock} top -d 0.3", "Enter")
    t.wait(lambda ls: server_order(ls) == ["other/zz", "main/aa"], "top running")
    t.run("send-keys", "-t", "top", "C-z")
    t.wait(lambda ls: any("Stopped" in ln for ln in ls), "the shell to report top stopped")
    assert t.fmt("#{alternate_on}") == "0", "alternate screen left on while stopped"
    t.run("send-keys", "-t", "top", f"stty -g > {tmp_path}/stopped", "Enter")
    saved(tmp_path / "stopped")
    assert (tmp_path / "before").read_text() == (tmp_path / "stopped").read_text(), \
        "tty settings not restored on Ctrl-Z"
    t.run("send-keys", "-t", "top", "fg", "Enter")
    t.wait(lambda ls: server_order(ls) == ["other/zz", "main/aa"] and ls[0].startswith("sluice "),
           "top drawing again after fg")
    assert t.fmt("#{alternate_on}") == "1"
    t.run("send-keys", "-t", "top", "q")
    st.wait_for(lambda: t.fmt("#{alternate_on}") == "0", T, "top to quit after fg")
    t.run("send-keys", "-t", "top", "echo TOP-EXITED rc=$?", "Enter")
    t.wait(lambda ls: any(ln.startswith("TOP-EXITED rc=0") for ln in ls), "top's exit status 0")
    for c in held:
        c.close()
