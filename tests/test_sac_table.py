"""benchmarks/sac_table.py on small synthetic eval.csv files: the IQM and its bootstrap interval
(hand-checked values), the step a run is scored at, the no-collapse check, the targets and missing
cells, the published figures and bad input."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("sac_table", REPO / "benchmarks" / "sac_table.py")
sac_table = importlib.util.module_from_spec(_spec)
sys.modules["sac_table"] = sac_table
_spec.loader.exec_module(sac_table)

HEADER = "step,mean_return,std_return,train_return,wall_s,steps_per_s\n"


def _write(path: Path, rows: list[tuple[int, float]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{s},{r:.2f},0.00,0.00,1.0,100.0\n" for s, r in rows))


def _curve(values: list[float]) -> list[tuple[int, float]]:
    return [(10_000 * (i + 1), v) for i, v in enumerate(values)]


@pytest.fixture
def runs(tmp_path) -> Path:
    # Vanilla Hopper, scored at 40k: finals 700, 800, 600, 300; bests 1000, 1000, 600, 300.
    _write(tmp_path / "Hopper-v5-s0-eval.csv", _curve([100, 1000, 900, 700]))          # 0.70: collapsed
    _write(tmp_path / "Hopper-v5-s1-eval.csv",                                          # 0.80: passes
           _curve([100]) + [(20_000, 123.0)] + _curve([100, 500, 1000, 800])[1:])
    _write(tmp_path / "Hopper-v5-s2-eval.csv", _curve([50, 200, 400, 600]))
    _write(tmp_path / "Hopper-v5-s3" / "eval.csv", _curve([0, 100, 200, 300]))          # run-folder layout
    # Preset: s0 runs past 40k (its 50k row is not scored), s2 stops at 30k.
    _write(tmp_path / "Hopper-v5-crossq-c256x256-s0-eval.csv", _curve([500, 1500, 1800, 2000, 9999]))
    _write(tmp_path / "Hopper-v5-crossq-c256x256-s1-eval.csv", _curve([500, 1500, 2000, 2100]))
    _write(tmp_path / "Hopper-v5-crossq-c256x256-s2-eval.csv", _curve([600, 1700, 2300]))
    return tmp_path


def test_run_names_give_env_variant_and_seed(tmp_path):
    assert sac_table.parse_name("Hopper-v5-s0", tmp_path) == ("Hopper-v5", "sac", 0)
    assert sac_table.parse_name("Ant-v5-crossq-s12", tmp_path) == ("Ant-v5", "crossq", 12)
    assert sac_table.parse_name("Walker2d-v5-crossq-c256x256-s2", tmp_path) == ("Walker2d-v5", "crossq-c256x256", 2)
    with pytest.raises(ValueError, match="is not <env>-v<N>"):
        sac_table.parse_name("hopper-seed0", tmp_path)


def test_cells_score_each_seed_at_the_step_and_its_best_up_to_it(runs):
    cells = sac_table.cells(sac_table.load_runs(runs), at=40_000, reps=200)
    vanilla, preset = cells
    assert (vanilla.variant, preset.variant) == ("sac", "crossq-c256x256")  # vanilla first
    assert vanilla.seeds == (0, 1, 2, 3) and vanilla.steps == (40_000,) * 4
    assert vanilla.finals == (700, 800, 600, 300)          # s1's repeated 20k row: the last is kept
    assert vanilla.bests == (1000, 1000, 600, 300)
    assert preset.steps == (40_000, 40_000, 30_000)        # s0's 50k row ignored, s2 at its last
    assert preset.finals == (2000, 2100, 2300) and preset.bests == (2000, 2100, 2300)
    # IQM = mean of the middle half: sorted 300, 600, 700, 800 -> (600 + 700) / 2.
    assert vanilla.final_iqm[0] == pytest.approx(650.0)
    assert vanilla.best_iqm[0] == pytest.approx(800.0)     # sorted 300, 600, 1000, 1000
    # Three seeds trim nothing (floor(0.25 * 3) = 0): the plain mean.
    assert preset.final_iqm[0] == pytest.approx(6400 / 3)


def test_interval_holds_the_iqm_within_the_seed_range():
    point, low, high = sac_table.iqm_ci([300, 600, 700, 800], reps=500)
    assert point == pytest.approx(650.0)
    assert 300 <= low < point < high <= 800
    assert sac_table.iqm_ci([5.0, 5.0, 5.0], reps=50) == pytest.approx((5.0, 5.0, 5.0))
    # Seeded: the same interval twice.
    assert sac_table.iqm_ci([1, 4, 9, 16, 25], reps=300) == sac_table.iqm_ci([1, 4, 9, 16, 25], reps=300)


def test_collapse_check_is_final_at_least_point_eight_of_best(runs):
    vanilla = sac_table.cells(sac_table.load_runs(runs), at=40_000, reps=50)[0]
    assert vanilla.ratios() == pytest.approx([0.7, 0.8, 1.0, 1.0])
    assert vanilla.collapsed() == [0]                      # 0.80 exactly passes
    cell = sac_table.Cell("Hopper-v5", "sac", (0,), (10_000,), (-5.0,), (-1.0,), (0, 0, 0), (0, 0, 0))
    assert cell.ratios() == [None] and cell.collapsed() == []   # no ratio without a positive best


def test_report_table_targets_and_missing_cells(runs):
    text = sac_table.report(runs, at=40_000, min_seeds=3, reps=200, expect=("tqc",))
    rows = [line for line in text.splitlines() if line.startswith("| Hopper-v5")]
    assert len(rows) == 2
    assert "| 650 [" in rows[0] and "| 0.70, 0.80, 1.00, 1.00 | no (s0) |" in rows[0]
    assert "| – | 2787 / 4054 |" in rows[0]                  # nothing published at 40k
    assert "(s2 at 30k)" in rows[1] and "| yes |" in rows[1]
    target = next(line for line in text.splitlines() if line.startswith("- Hopper-v5: best preset"))
    assert "crossq-c256x256 IQM 2133 (provisional: 3 seeds, shortest at 30k)" in target
    assert "published" not in target and "above vanilla 650" in target
    assert "- Hopper-v5 crossq-c256x256: 2 of 3 seeds at 40k (partial: s2 at 30k)" in text
    assert "- Hopper-v5 sac:" not in text                  # 4 seeds reached 40k
    assert "- Ant-v5 tqc: 0 of 3 seeds at 40k" in text
    assert "- Walker2d-v5 sac: 0 of 3 seeds at 40k" in text
    # At 300k every run is short of the step: scored at its last evaluation, beside the figures.
    text = sac_table.report(runs, reps=50)
    assert "(s0 at 40k, s1 at 40k, s2 at 40k, s3 at 40k)" in text
    assert "| 3502 (SimbaV2 UTD2); SAC 2160 | 2787 / 4054 |" in text
    assert "(s0 at 50k, s1 at 40k, s2 at 30k)" in text     # the preset's s0 is scored at 9999 now
    assert "crossq-c256x256 IQM 4800 (provisional" in text and "at/above published 3502 (SimbaV2 UTD2)" in text


def test_published_figures_have_sources_and_the_best_at_300k():
    best = {env: sac_table.published_best(env) for env in sac_table.ENVS}
    assert {e: (p.value, p.method) for e, p in best.items()} == {
        "HalfCheetah-v5": (10835, "MR.Q"), "Hopper-v5": (3502, "SimbaV2 UTD2"),
        "Walker2d-v5": (5941, "CrossQ"), "Ant-v5": (6200, "SimbaV2 UTD2")}
    assert [sac_table.published(e, 1_000_000, "SAC").value for e in sac_table.ENVS] == [11321, 2787, 4536, 5734]
    assert [sac_table.published(e, 1_000_000, "SimbaV2 UTD2").value for e in sac_table.ENVS] == \
        [12022, 4054, 6938, 7429]
    for p in sac_table.PUBLISHED:
        assert ".csv" in p.source and "env_step" in p.source, p
    assert set(sac_table.V5_CHANGES) == {sac_table.task(e) for e in sac_table.ENVS}


def test_cli_writes_markdown_and_curves(runs, tmp_path, capsys):
    out, png = tmp_path / "table.md", tmp_path / "plots" / "curves.png"
    sac_table.main(["--dir", str(runs), "--at", "40000", "--reps", "100", "--out", str(out), "--plot", str(png)])
    printed = capsys.readouterr().out
    assert out.read_text() in printed and "| Hopper-v5 | sac | 4 |" in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    sac_table.main(["--published"])
    assert "| Walker2d | 300k | CrossQ | 5941 | 10 |" in capsys.readouterr().out


def test_bad_input_is_one_line(runs, tmp_path, capsys):
    with pytest.raises(SystemExit, match="is not a folder"):
        sac_table.main(["--dir", str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit, match="no evaluation at or before step 5000; lower --at"):
        sac_table.main(["--dir", str(runs), "--at", "5000"])
    (runs / "odd-eval.csv").write_text(HEADER)
    with pytest.raises(SystemExit, match="run name 'odd'"):
        sac_table.main(["--dir", str(runs)])
    (runs / "odd-eval.csv").unlink()
    _write(runs / "Hopper-v5-s0" / "eval.csv", _curve([1.0]))
    with pytest.raises(SystemExit, match="keep one of them"):
        sac_table.main(["--dir", str(runs)])
    bad = tmp_path / "cols"
    bad.mkdir()
    (bad / "Ant-v5-s0-eval.csv").write_text("x,y\n1,2\n")
    with pytest.raises(SystemExit, match="needs the columns step and mean_return"):
        sac_table.main(["--dir", str(bad)])
    with pytest.raises(SystemExit):
        sac_table.main(["--reps", "0"])
    assert "--reps must be >= 1" in capsys.readouterr().err
