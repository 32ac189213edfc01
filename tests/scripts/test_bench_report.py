"""bench/report.py: the verdict rule, and re-rendering the tables of a
committed data file (`report.py --from FILE --check`).

The fixture tests/scripts/data/bench-fixture.json is a trimmed `--smoke`
run (bulk-1 and idle-100 in `defaults`, rr in `matched`) with a second,
scaled repetition added and one synthetic profile run; its `tables_md` is
what report.py rendered from it. A change to how report.py renders tables
changes that text: regenerate it with
    /usr/bin/python3 bench/report.py --from tests/scripts/data/bench-fixture.json
and put the output in the fixture's "tables_md" (after checking the diff).

    /usr/bin/python3 -m pytest -q tests/scripts
"""
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "bench" / "report.py"
FIXTURE = Path(__file__).resolve().parent / "data" / "bench-fixture.json"

sys.path.insert(0, str(REPO / "bench"))
import report  # noqa: E402


@pytest.mark.parametrize("mine,theirs,better,factor,want", [
    # higher is better: sluice's worst must beat the peer's best
    ([10, 11, 12], [7, 8, 9], "high", 1.0, "met"),
    ([9, 11, 12], [7, 8, 9], "high", 1.0, "met"),          # worst == peer's best
    ([8.5, 11, 12], [7, 8, 9], "high", 1.0, "level (within noise)"),
    ([5, 6, 7], [7.5, 8, 9], "high", 1.0, "missed"),       # best below the peer's worst
    ([5, 6, 7.5], [7.5, 8, 9], "high", 1.0, "level (within noise)"),
    # the factor scales the peer's figures: >= 1.15x
    ([11.5, 12], [9, 10], "high", 1.15, "met"),
    ([11, 12], [9, 10], "high", 1.15, "level (within noise)"),
    ([10, 10.3], [9, 10], "high", 1.15, "missed"),
    # lower is better, mirrored
    ([1, 2], [3, 4], "low", 1.0, "met"),
    ([1, 3.5], [3, 4], "low", 1.0, "level (within noise)"),
    ([4.5, 5], [3, 4], "low", 1.0, "missed"),
    ([2, 2.4], [3, 4], "low", 0.8, "met"),
    ([2, 2.5], [3, 4], "low", 0.8, "level (within noise)"),
    ([3.3, 4], [3, 4], "low", 0.8, "missed"),
    # one repetition each: a plain comparison
    ([10], [9], "high", 1.0, "met"),
    ([8], [9], "high", 1.0, "missed"),
    # an absolute target (a number, not repetitions)
    ([0.5, 0.9], 1.0, "low", 1.0, "met"),
    ([0.5, 1.2], 1.0, "low", 1.0, "level (within noise)"),
    ([1.1, 1.2], 1.0, "low", 1.0, "missed"),
    ([0, 0], 0, "low", 1.0, "met"),
    ([0, 3], 0, "low", 1.0, "level (within noise)"),
    # no data
    ([], [1], "high", 1.0, "no data"),
    ([1], [], "high", 1.0, "no data"),
    ([1], None, "high", 1.0, "no data"),
])
def test_verdict(mine, theirs, better, factor, want):
    assert report.verdict(mine, theirs, better, factor) == want


def test_ratio_is_median_over_median():
    assert report.ratio([1, 2, 9], [2, 4, 100]) == pytest.approx(0.5)


def run_from(path, *extra):
    return subprocess.run([sys.executable, str(REPORT), "--from", str(path), *extra],
                          capture_output=True, text=True, timeout=60)


def test_from_reproduces_committed_tables():
    r = run_from(FIXTURE, "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    r = run_from(FIXTURE)
    assert r.returncode == 0, r.stderr
    assert r.stdout == json.loads(FIXTURE.read_text())["tables_md"]


def test_figures_recomputed_from_runs():
    """A table cell and a verdict, recomputed here from the runs alone."""
    data = json.loads(FIXTURE.read_text())
    out = run_from(FIXTURE).stdout
    rps = {t: [r["metrics"]["rps"] for r in data["runs"]
               if r["case"] == "rr" and r["target"] == t and r["config"] == "matched"]
           for t in ("sluice", "haproxy", "nginx")}
    best = max(("haproxy", "nginx"), key=lambda t: statistics.median(rps[t]))
    med = statistics.median(rps["sluice"])
    half = (max(rps["sluice"]) - min(rps["sluice"])) / 2
    cell = f"{med:,.0f} ±{half:,.0f} ({med / statistics.median(rps[best]):.2f}×)"
    row = next(line for line in out.splitlines()
               if line.startswith("| sluice | ") and "machine" not in line
               and line.count("|") == 7)
    assert row.split(" | ")[1] == cell, (row, cell)
    want = report.verdict(rps["sluice"], rps[best], "high", 1.15)
    line = next(x for x in out.splitlines() if x.startswith("| rr: req/s |"))
    assert line.rstrip(" |").endswith(want), line
    # the profile section: counts divided by wrk's requests
    prof = next(r for r in data["runs"] if r["case"] == "profile-rr")
    per = prof["raw"]["syscalls"]["read"] / prof["raw"]["requests"]
    assert f"`read` {per:.2f}" in out


def test_check_fails_on_changed_data(tmp_path):
    data = json.loads(FIXTURE.read_text())
    run = next(r for r in data["runs"] if r["case"] == "rr" and r["target"] == "sluice")
    run["metrics"]["rps"] *= 1.5
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    r = run_from(bad, "--check")
    assert r.returncode == 1
    assert "re-rendered" in r.stdout


def test_docs_refused_for_dirty_or_other_commit():
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    ok = {"tree_dirty": "0", "build_current": "1", "commit": head}
    if head:
        assert report.docs_refusal(ok, str(REPO)) is None
    assert "not clean" in report.docs_refusal(dict(ok, tree_dirty="1"), str(REPO))
    assert "not clean" in report.docs_refusal({}, str(REPO))
    assert "not built" in report.docs_refusal(dict(ok, build_current="0"), str(REPO))
    assert "the run was at" in report.docs_refusal(dict(ok, commit="0" * 40), str(REPO))
