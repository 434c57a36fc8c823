"""`maxent sweep` (maxent/cli/sweep/) on a tiny plan: QARL, RARL, SAC and domain-randomised
SAC on InvertedPendulum-v5, trained sequentially (one process killed after a checkpoint, then
resumed by the re-run) and as Ray tasks on two local workers (one worker killed, then resumed);
scored on the uncertainty mesh (both bounds) and against each adversarial method's adversary; the
report's files and rliable aggregates; a directory from another sweep and bad input refused. The
kills are injected here: the run's first checkpoint save ends its process, as a kill would."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from maxent.cli.sweep import METHODS, SweepError, load_sweep_config, plan_runs, run_sweep, sweep_main

CRASH_EXIT_CODE = 75

TINY = """
methods = {methods}
tasks = ["InvertedPendulum-v5"]
seeds = {seeds}
budgets = [120]
root = "{root}"
backend = "{backend}"
max_episode_steps = 30
checkpoint_every = 60
points_per_dim = 2
adversary_episodes = 1
bootstrap_reps = 50
[common]
hidden_sizes = [16, 16]
batch_size = 16
buffer_size = 1000
learning_starts = 20
log_interval = 60
[qarl]
episodes_per_phase = 2
samples_per_update = 4
performance_bound = 1.0
[rarl]
episodes_per_phase = 2
"""
ALL = '["qarl", "rarl", "sac", "dr"]'


def write_config(tmp_path: Path, backend: str, methods: str = ALL, seeds: str = "[0]",
                 ) -> tuple[Path, Path]:
    root = tmp_path / "sweep"
    path = tmp_path / "sweep.toml"
    path.write_text(TINY.format(methods=methods, root=root, backend=backend, seeds=seeds))
    return path, root


def done(root: Path, name: str) -> dict:
    return json.loads((root / name / "done.json").read_text())


def die_after_first_checkpoint(killed: str, marker: str):
    """Patches every checkpoint save of this process so that the first save of run ``killed``
    ends the process right after it (once: ``marker`` records that it happened)."""
    def install():
        import os

        from maxent.training.agent import CheckpointCallback

        fire = CheckpointCallback._fire

        def fire_then_die(self, agent):
            saved = fire(self, agent)
            if self.save_path.parent.as_posix().endswith(killed) and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(CRASH_EXIT_CODE)  # no cleanup, no done.json: as a kill would
            return saved

        CheckpointCallback._fire = fire_then_die
    return install


SWEEP_THAT_DIES = """
import sys
sys.path.insert(0, sys.argv[1])
from test_sweep import die_after_first_checkpoint
die_after_first_checkpoint(sys.argv[2], sys.argv[3])()
from maxent.cli.sweep import sweep_main
raise SystemExit(sweep_main(sys.argv[4:]))
"""


@pytest.mark.filterwarnings("ignore:taking over the lock")  # the killed run's, as expected
def test_sequential_sweep_resumes_a_killed_process_and_reports(tmp_path, capsys):
    path, root = write_config(tmp_path, "sequential")
    killed = "InvertedPendulum-v5/sac/s0-120"
    first = subprocess.run([sys.executable, "-c", SWEEP_THAT_DIES, str(Path(__file__).parent), killed,
                            str(tmp_path / "killed"), str(path), "--quiet"],
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == CRASH_EXIT_CODE, first.stderr[-2000:]
    assert (root / killed / "model").is_dir() and not (root / killed / "done.json").exists()
    assert done(root, "InvertedPendulum-v5/qarl/s0-120")["steps"] == 120

    assert sweep_main([str(path)]) == 0
    printed = capsys.readouterr().out
    assert "finished already: InvertedPendulum-v5/qarl/s0-120" in printed
    resumed = done(root, killed)
    assert resumed["resumed_from"] == 60 and resumed["steps"] == 120

    report = root / "report"
    with open(report / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 4 and {r["method"] for r in runs} == {"QARL", "RARL", "SAC", "DR"}
    assert all(r["vs_QARL"] and r["vs_RARL"] for r in runs)  # every protagonist, both adversaries
    with open(report / "cells.csv") as f:
        cells = list(csv.DictReader(f))
    assert len(cells) == 4 * 4
    assert {float(c["mass:pole"]) for c in cells} == {1.0, 31.0}
    assert {float(c["mass:cart"]) for c in cells} == {1.0, 11.0}
    aggregates = json.loads((report / "aggregates.json").read_text())["budgets"]["120"]
    assert set(aggregates["iqm"]["mesh_mean"]) == {"QARL", "RARL", "SAC", "DR"}
    assert set(aggregates["probability_of_improvement"]["mesh_p10"]) == {"QARL,RARL", "QARL,SAC", "QARL,DR"}
    for name in ("rliable-b120.png", "probability_of_improvement-b120.png",
                 "heatmaps-InvertedPendulum-v5-b120.png"):
        assert (report / name).read_bytes()[:4] == b"\x89PNG", name
    summary = (report / "summary.md").read_text()
    assert "| InvertedPendulum-v5 | QARL | 1 |" in summary and "QARL > SAC" in summary
    assert "mesh 10th pct" in summary and "vs QARL adversary" in summary

    # The same root with another setting is a different sweep: refused, naming the field.
    with pytest.raises(SystemExit, match=r"holds a different sweep.*configs\.qarl\.max_force is None "
                                         r"there, 5\.0 here"):
        sweep_main([str(path), "--set", "qarl.max_force=5.0"])
    # A run directory from another sweep (here: trained on another uncertainty set) is refused too.
    info = root / "InvertedPendulum-v5/dr/s0-120/run.json"
    spec = json.loads(info.read_text())
    spec["env"]["domain_randomization"] = "invertedpendulum-1d"
    info.write_text(json.dumps(spec))
    with pytest.raises(SystemExit, match=r"dr/s0-120 is from a different sweep: env\.domain_randomization "
                                         r"is 'invertedpendulum-1d' there, 'invertedpendulum-2d' here"):
        sweep_main([str(path)])


def test_ray_sweep_on_two_workers_resumes_a_killed_worker(tmp_path):
    ray = pytest.importorskip("ray")
    path, root = write_config(tmp_path, "ray", methods='["qarl", "sac"]')  # two runs, in parallel
    killed = "InvertedPendulum-v5/sac/s0-120"
    # Every Ray worker installs the kill when it starts; it fires once, in the first sweep.
    setup = die_after_first_checkpoint(killed, str(tmp_path / "killed"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": setup})
    try:
        assert ray.cluster_resources()["CPU"] == 2
        first = run_sweep(load_sweep_config(path), verbose=False, report=False)
        assert first.backend == "ray"
        assert "WorkerCrashedError" in first.failed[killed]
        assert set(first.trained) == {"InvertedPendulum-v5/qarl/s0-120"}
        assert not (root / killed / "done.json").exists()
        second = run_sweep(load_sweep_config(path), verbose=False)
    finally:
        ray.shutdown()
    assert second.failed == {}
    assert second.trained[killed]["resumed_from"] == 60 and second.trained[killed]["steps"] == 120
    assert all(second.trained[n].get("skipped") for n in first.trained)
    assert len(second.scored) == 2
    assert set(second.scored[killed]["conditions"]) == {"nominal", "vs QARL"}
    assert (root / "report" / "rliable-b120.png").exists()


def test_bad_sweep_input_is_named(tmp_path, monkeypatch):
    path, root = write_config(tmp_path, "sequential")
    with pytest.raises(SweepError, match=r"unknown method 'ppo' in methods.*valid methods: "):
        load_sweep_config(path, {"methods": ["qarl", "ppo"]})
    with pytest.raises(SweepError, match=r"method 'ucb1' cannot be swept: .*sweepable methods: "
                                         r"\['qarl', 'rarl', 'sac', 'dr'\]"):
        load_sweep_config(path, {"methods": ["sac", "ucb1"]})
    with pytest.raises(SystemExit, match=r"method 'grpo' cannot be swept"):
        sweep_main([str(path), "--set", "grpo.group_size=2", "--dry-run"])
    bad = tmp_path / "bad.toml"
    bad.write_text('bugdets = [3]\n' + path.read_text())
    with pytest.raises(SweepError, match=r"unknown sweep field 'bugdets' in .*bad\.toml \(did you mean "
                                         r"'budgets'\?\)"):
        load_sweep_config(bad)
    with pytest.raises(SystemExit, match=r"unknown QARLConfig field 'max_forse' in \[qarl\]"):
        sweep_main([str(path), "--set", "qarl.max_forse=5"])
    with pytest.raises(SystemExit, match=r"unknown uncertainty set 'pendulum-2d'"):
        sweep_main([str(path), "--set", "uncertainty.InvertedPendulum-v5=pendulum-2d", "--dry-run"])
    with pytest.raises(SystemExit, match=r"budgets must be a positive whole number"):
        sweep_main([str(path), "--budgets", "0"])
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(SystemExit, match=r"Ray is not installed: pip install 'maxent\[ray\]'"):
        sweep_main([str(path), "--backend", "ray", "--dry-run"])
    assert sweep_main([str(path), "--backend", "auto", "--dry-run"]) == 0  # falls back: sequential
    other = tmp_path / "other"
    (other / "notes").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"holds no sweep\.json: it is not a sweep directory"):
        sweep_main([str(path), "--root", str(other)])
    pytest.importorskip("yaml")
    yaml_file = tmp_path / "sweep.yaml"
    yaml_file.write_text("methods: [sac]\nseeds: [0]\nbudget: 100\n")
    with pytest.raises(SweepError, match=r"unknown sweep field 'budget' in .*sweep\.yaml"):
        load_sweep_config(yaml_file)


def test_any_registered_control_algorithm_is_a_method(tmp_path, monkeypatch):
    """A newly registered continuous-control algorithm is swept with no change to the sweep: its
    own config table, its config class, its runs in the plan."""
    from maxent.agents.registry import ALGORITHMS, Algorithm

    assert set(METHODS) == {"qarl", "rarl", "sac", "dr"}
    monkeypatch.setitem(ALGORITHMS, "tiny-sac", Algorithm(
        "tiny-sac", "maxent.agents.sac:SAC", "maxent.agents.sac:SACConfig", "SAC, registered again",
        "Pendulum-v1", 100, control=True))
    path, root = write_config(tmp_path, "sequential", methods='["tiny-sac", "qarl"]', seeds="[0, 1]")
    with pytest.raises(SweepError, match=r"unknown SACConfig field 'gama' in \[tiny-sac\]"):
        plan_runs(load_sweep_config(path, {"tiny-sac": {"gama": 0.9}}))
    cfg = load_sweep_config(path, {"tiny-sac": {"gamma": 0.9}})
    plan = {spec["name"]: spec for spec in plan_runs(cfg)}
    spec = plan["InvertedPendulum-v5/tiny-sac/s1-120"]
    assert spec["method"] == "tiny-sac" and spec["config"]["gamma"] == 0.9
    assert spec["config"]["hidden_sizes"] == [16, 16]  # [common] reaches it too
    assert len(plan) == 4 and cfg.claimed == "qarl"
    assert sweep_main([str(path), "--dry-run", "--set", "tiny-sac.gamma=0.9"]) == 0


def weights_and_state(model: Path) -> tuple[dict, dict, dict]:
    """A checkpoint's tensors, replay arrays and state, for bit-for-bit comparison."""
    import numpy as np
    from safetensors.torch import load_file

    with np.load(model / "replay.npz") as arrays:
        replay = {k: arrays[k] for k in arrays.files}
    return load_file(model / "weights.safetensors"), replay, json.loads((model / "state.json").read_text())


@pytest.mark.filterwarnings("ignore:taking over the lock")  # the killed runs', as expected
def test_a_sweep_killed_four_times_ends_as_an_uninterrupted_one(tmp_path):
    """With a time limit (max_episode_steps) each run's env is a constructor, not an id; the
    episodes in flight at every kill are still replayed, so the resumed runs end bit for bit where
    uninterrupted ones do."""
    import numpy as np
    import torch

    from maxent.training.env_identity import InexactResumeWarning

    def config(name: str) -> Path:
        (tmp_path / name).mkdir()
        path, _ = write_config(tmp_path / name, "sequential", methods='["sac", "dr"]')
        path.write_text(path.read_text().replace("checkpoint_every = 60", "checkpoint_every = 30"))
        return path

    killed_path, straight_path = config("killed"), config("straight")
    runs = ["InvertedPendulum-v5/sac/s0-120", "InvertedPendulum-v5/dr/s0-120"]
    root = tmp_path / "killed" / "sweep"
    in_flight = []
    # sac dies at its checkpoints at 30, 60 and 90 steps, then dr at its first: four processes.
    for i, killed in enumerate([runs[0]] * 3 + [runs[1]]):
        first = subprocess.run([sys.executable, "-c", SWEEP_THAT_DIES, str(Path(__file__).parent),
                                killed, str(tmp_path / f"killed-{i}"), str(killed_path), "--quiet"],
                               capture_output=True, text=True, timeout=300)
        assert first.returncode == CRASH_EXIT_CODE, first.stderr[-2000:]
        assert "InexactResumeWarning" not in first.stderr, first.stderr[-2000:]
        assert not (root / killed / "done.json").exists()
        in_flight += json.loads((root / killed / "model" / "state.json").read_text())["episode_length"]
    assert any(length > 0 for length in in_flight)  # episodes were cut by the kills
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert sweep_main([str(killed_path), "--quiet"]) == 0
    assert not [w for w in caught if issubclass(w.category, InexactResumeWarning)]
    assert done(root, runs[1])["resumed_from"] == 30 and done(root, runs[1])["steps"] == 120
    assert sweep_main([str(straight_path), "--quiet"]) == 0
    for run in runs:
        resumed = weights_and_state(root / run / "model")
        straight = weights_and_state(tmp_path / "straight" / "sweep" / run / "model")
        assert sorted(resumed[0]) == sorted(straight[0]) and len(resumed[0]) > 40
        for name, tensor in resumed[0].items():
            assert torch.equal(tensor, straight[0][name]), f"{run}: tensor {name} differs"
        for name, array in resumed[1].items():
            np.testing.assert_array_equal(array, straight[1][name], err_msg=f"{run}: replay {name}")
        assert resumed[2] == straight[2], run
