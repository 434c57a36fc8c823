"""benchmarks/time_to_threshold.py: the order of the libraries, when a run has reached the
threshold, the summary and its ratios from CSV rows, resuming, and the clock that leaves
evaluation out."""

import importlib.util
import math
import subprocess
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "time_to_threshold.py"
_spec = importlib.util.spec_from_file_location("time_to_threshold", SCRIPT)
ttt = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ttt  # dataclasses look their module up there
_spec.loader.exec_module(ttt)

SETTINGS = {"env": "Pendulum-v1", "device": "cpu", "threads": "1", "eval_every": "100",
            "eval_episodes": "5", "cache": "empty", "learning_starts": "default"}


def _row(lib, seed, step, train_s, ret, **settings):
    return {**SETTINGS, **settings, "library": lib, "seed": str(seed), "step": str(step),
            "train_s": str(train_s), "eval_return": str(ret)}


def test_each_library_goes_first_in_turn():
    libs = ["maxent", "sb3", "sbx"]
    assert [ttt.rotated(libs, i) for i in range(4)] == [
        ["maxent", "sb3", "sbx"], ["sb3", "sbx", "maxent"], ["sbx", "maxent", "sb3"],
        ["maxent", "sb3", "sbx"]]
    assert ttt.rotated(["sb3", "maxent"], 1) == ["maxent", "sb3"]


def test_evaluations_every_chunk_and_at_the_last_step():
    assert ttt.eval_points(15000, 2500) == [2500, 5000, 7500, 10000, 12500, 15000]
    assert ttt.eval_points(12000, 5000) == [5000, 10000, 12000]
    assert ttt.eval_points(300, 5000) == [300]


def test_the_first_evaluation_at_or_above_the_threshold_counts():
    rows = [_row("sb3", 0, 300, 30.0, -100), _row("sb3", 0, 100, 10.0, -900),
            _row("sb3", 0, 200, 20.0, -400)]  # order in the file does not matter
    assert ttt.outcome(rows, -400, 1000) == ttt.Outcome(True, 200, 20.0)
    assert ttt.outcome(rows, -50, 1000) == ttt.Outcome(False, 300, 30.0)
    # Rows past --max-steps (from a longer earlier run) do not count.
    assert ttt.outcome(rows, -150, 200) == ttt.Outcome(False, 200, 20.0)
    assert ttt.outcome([], -400, 1000) is None


def test_a_run_is_finished_when_it_reached_the_threshold_or_max_steps():
    rows = [_row("sb3", 0, 100, 10.0, -900), _row("sb3", 0, 200, 20.0, -400)]
    assert ttt.finished(rows, -400, 1000)
    assert not ttt.finished(rows, -300, 1000)  # cut short: run again
    assert ttt.finished(rows, -300, 200)  # ran to the end without reaching it
    assert not ttt.finished([], -300, 200)


def test_ratios_of_wall_clock_and_their_bounds_when_a_library_misses():
    fast = ttt.summarize([ttt.Outcome(True, 1000, 10.0), ttt.Outcome(True, 3000, 30.0),
                          ttt.Outcome(True, 2000, 20.0)])
    assert (fast.median_steps, fast.median_s, fast.lower_s) == (2000, 20.0, 20.0)
    slow = ttt.summarize([ttt.Outcome(True, 2000, 50.0), ttt.Outcome(False, 5000, 100.0),
                          ttt.Outcome(True, 4000, 60.0)])
    assert (slow.median_steps, slow.median_s) == (4000, 60.0)  # one miss of three: still a median
    missed = ttt.summarize([ttt.Outcome(False, 5000, 90.0), ttt.Outcome(True, 1000, 40.0),
                            ttt.Outcome(False, 5000, 110.0)])
    assert math.isinf(missed.median_s) and math.isinf(missed.median_steps)
    assert missed.lower_s == 90.0
    assert ttt.ratio_text("sb3", slow, fast) == "3.00x"
    assert ttt.ratio_text("sb3", missed, fast) == "> 4.50x (sb3 did not reach it)"
    assert ttt.ratio_text("sbx", fast, missed) == "< 0.22x (maxent did not reach it)"
    assert ttt.ratio_text("sbx", missed, missed) == "n/a (neither reached it)"


def test_report_from_the_csv_rows_of_one_experiment(tmp_path):
    out = tmp_path / "ttt.csv"
    for row in [_row("maxent", 0, 100, 5.0, -900), _row("maxent", 0, 200, 10.0, -300),
                _row("sb3", 0, 100, 12.0, -800), _row("sb3", 0, 200, 25.0, -350),
                _row("sbx", 0, 100, 8.0, -1000), _row("sbx", 0, 200, 16.0, -700),
                _row("sb3", 0, 100, 1.0, 0.0, threads="2")]:  # another experiment in the same file
        ttt.append_row(out, row)
    rows = ttt.experiment_rows(ttt.read_rows(out), SETTINGS)
    assert len(rows) == 6
    lines = ttt.report(rows, ["maxent", "sb3", "sbx"], [0, 1], -400, 200)
    assert lines[0].split()[:6] == ["maxent", "median", "200", "steps,", "10.0", "s"]
    assert "(1/1 seeds reached it; seed 0: 200 steps, 10.0 s)" in lines[0]
    assert "seed 0: 200 steps, 25.0 s" in lines[1]
    assert "median not reached by 200" in lines[2] and "not reached by 200 (16.0 s)" in lines[2]
    assert lines[3:] == ["  sb3 / maxent wall-clock to threshold: 2.50x",
                         "  sbx / maxent wall-clock to threshold: > 1.60x (sbx did not reach it)"]


def test_a_cut_short_run_loses_only_its_own_rows(tmp_path):
    out = tmp_path / "ttt.csv"
    keep = [_row("maxent", 0, 100, 5.0, -900), _row("sb3", 1, 100, 5.0, -900),
            _row("sb3", 0, 100, 5.0, -900, eval_every="50")]
    for row in [*keep, _row("sb3", 0, 100, 6.0, -800), _row("sb3", 0, 200, 12.0, -700)]:
        ttt.append_row(out, row)
    ttt.drop_run(out, SETTINGS, "sb3", 0)
    assert ttt.read_rows(out) == keep


def test_a_csv_of_another_shape_is_refused_with_the_fix(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("step,mean_return\n100,-3\n")
    with pytest.raises(SystemExit, match="pass another --out"):
        ttt.read_rows(out)


def test_maxent_clock_leaves_evaluation_time_out(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(ttt, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    seen = []

    def at_eval(step, train_s):
        seen.append((step, train_s))
        now[0] += 5.0  # an evaluation takes 5 s
        return False

    callback = ttt._maxent_callback([2, 4], at_eval)
    agent = types.SimpleNamespace(num_timesteps=0)
    callback.start = now[0]
    going = []
    for step, clock in [(1, 4.0), (2, 10.0), (3, 17.0), (4, 20.0)]:
        agent.num_timesteps, now[0] = step, clock
        going.append(callback.on_step(agent))
    assert seen == [(2, 10.0), (4, 15.0)]  # 20 s in all, less the 5 s evaluation
    assert going == [True, True, True, False]  # the last point ends training


def test_maxent_stops_at_the_first_evaluation_that_reaches_the_threshold():
    callback = ttt._maxent_callback([2, 4], lambda step, train_s: True)
    assert callback.on_step(types.SimpleNamespace(num_timesteps=1))
    assert not callback.on_step(types.SimpleNamespace(num_timesteps=2))


def test_bad_budget_is_refused_before_anything_runs(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--threshold", "0", "--eval-every", "0",
                          "--out", str(tmp_path / "x.csv")], capture_output=True, text=True)
    assert out.returncode == 2
    assert "--eval-every must be >= 1, got 0" in out.stderr
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_pendulum_runs_record_rows_and_resume(tmp_path):
    out = tmp_path / "ttt.csv"
    cmd = [sys.executable, str(SCRIPT), "--env", "Pendulum-v1", "--threshold", "1e9",
           "--max-steps", "400", "--eval-every", "200", "--eval-episodes", "1", "--seeds", "0",
           "--libraries", "maxent", "sb3", "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = ttt.read_rows(out)
    assert [(r["library"], r["step"]) for r in rows] == [("maxent", "200"), ("maxent", "400"),
                                                         ("sb3", "200"), ("sb3", "400")]
    assert all(float(r["train_s"]) > 0 and float(r["eval_return"]) < 0 for r in rows)
    assert "median not reached by 400" in first.stdout
    assert "sb3 / maxent wall-clock to threshold: n/a (neither reached it)" in first.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("finished earlier") == 2
    assert ttt.read_rows(out) == rows
