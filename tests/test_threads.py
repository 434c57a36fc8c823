"""The thread policy of maxent.training.threads: team size from the usable cores and the other
runnable work, passive OpenMP waiting on shared cores, and where it takes effect."""

import os
import subprocess
import sys

import pytest
import torch

from maxent.training import threads
from maxent.training.threads import CpuShare


@pytest.mark.parametrize("cores, others, expected", [
    (2, 0.0, 2),   # idle machine: every core
    (2, 0.4, 2),   # a little background work does not cost a thread
    (2, 1.0, 1),   # one other run on two cores: one thread each
    (2, 3.0, 1),   # oversubscribed: still one thread, never zero
    (1, 0.0, 1),
    (4, 0.6, 3),
    (8, 2.2, 6),
    (16, 0.0, 16),
])
def test_choose_threads_leaves_the_busy_cores_to_the_others(cores, others, expected):
    assert threads.choose_threads(cores, others) == expected


@pytest.mark.parametrize("cores, others",
                         [(0, 0.0), (2, -1.0), (2, float("nan")), (2, float("inf"))])
def test_choose_threads_refuses_impossible_inputs(cores, others):
    with pytest.raises(ValueError, match="cores|others"):
        threads.choose_threads(cores, others)


def _fake_proc(running: int, own_states: str):
    """A /proc reader: ``running`` in /proc/stat and this process's threads in ``own_states``
    (one letter per thread of the real /proc/self/task listing, cycled)."""
    tasks = sorted(os.listdir("/proc/self/task"))
    states = {t: own_states[i % len(own_states)] for i, t in enumerate(tasks)}

    def read(path: str) -> str:
        if path == "/proc/stat":
            return f"cpu  1 2 3\nprocs_running {running}\nprocs_blocked 0\n"
        task = path.split("/")[4]
        return f"{task} (py (thread) x) {states.get(task, 'S')} 1 2 3\n"
    return read, tasks


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_others_running_subtracts_this_process_runnable_threads():
    read, tasks = _fake_proc(5, "S")  # only the reading thread of ours runs
    assert threads.others_running(read, samples=3, gap_s=0.0) == 4.0
    read, tasks = _fake_proc(5, "R")  # every thread of ours is runnable
    assert threads.others_running(read, samples=2, gap_s=0.0) == max(5 - len(tasks), 0)


def test_others_running_is_zero_where_proc_stat_cannot_be_read():
    def read(path: str) -> str:
        raise OSError("no /proc here")
    assert threads.others_running(read, samples=2, gap_s=0.0) == 0.0


def test_usable_cores_follows_the_affinity_mask():
    if hasattr(os, "sched_getaffinity"):
        assert threads.usable_cores() == len(os.sched_getaffinity(0))
    else:
        assert threads.usable_cores() == (os.cpu_count() or 1)


def test_spin_env_is_passive_only_on_shared_cores_and_never_over_the_user():
    assert threads.spin_env(CpuShare(2, 1.0), {}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert threads.spin_env(CpuShare(2, 0.0), {}) == {}
    assert threads.spin_env(CpuShare(2, 1.0), {"OMP_WAIT_POLICY": "ACTIVE"}) == {}
    assert threads.spin_env(CpuShare(2, 1.0), {"GOMP_SPINCOUNT": "10000"}) == {}


def test_configure_environment_sets_team_size_and_wait_policy():
    environ: dict[str, str] = {}
    assert threads.configure_environment(environ, CpuShare(2, 1.0)) == {
        "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}

    quiet: dict[str, str] = {}
    threads.configure_environment(quiet, CpuShare(4, 0.0))
    assert quiet == {"OMP_NUM_THREADS": "4"}

    pinned = {"OMP_NUM_THREADS": "3"}
    threads.configure_environment(pinned, CpuShare(2, 1.0))
    assert pinned == {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"}


def test_configure_environment_does_nothing_once_torch_is_loaded(monkeypatch):
    # torch is imported by this test module: its OpenMP runtime has read the environment.
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    before = dict(os.environ)
    assert threads.configure_environment(share=CpuShare(2, 3.0)) == {}
    assert dict(os.environ) == before


@pytest.fixture
def restore_threads():
    count = torch.get_num_threads()
    yield
    torch.set_num_threads(count)
    threads.auto_threads.cache_clear()


def test_apply_torch_threads_uses_an_explicit_count(restore_threads):
    assert threads.apply_torch_threads(1) == 1
    assert torch.get_num_threads() == 1


def test_apply_torch_threads_leaves_a_count_pinned_by_omp_num_threads(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(2)
    assert threads.apply_torch_threads(None) == 2


def test_apply_torch_threads_chooses_once_per_process(restore_threads, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    calls = []

    def busy() -> CpuShare:
        calls.append(1)
        return CpuShare(4, 2.0)
    monkeypatch.setattr(threads, "measure", busy)
    threads.auto_threads.cache_clear()
    torch.set_num_threads(3)
    assert threads.apply_torch_threads(None) == 2
    monkeypatch.setattr(threads, "measure", lambda: CpuShare(4, 0.0))
    assert threads.apply_torch_threads(None) == 2  # the first choice stands
    assert len(calls) == 1


def test_sac_sizes_torch_threads_from_its_config(restore_threads):
    from maxent.agents import SAC

    torch.set_num_threads(2)
    agent = SAC("Pendulum-v1", torch_threads=1, compile=False, hidden_sizes=(8,), buffer_size=1000)
    try:
        assert torch.get_num_threads() == 1
    finally:
        agent.close()


def test_the_maxent_command_sets_the_policy_before_torch_loads():
    # The console script imports maxent.cli.main and calls main(); what OpenMP reads must be in
    # the environment at the moment torch starts loading.
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = ("import os, sys\n"
            "seen = []\n"
            "class Watch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' and not seen:\n"
            "            seen.append(os.environ.get('OMP_NUM_THREADS'))\n"
            "sys.meta_path.insert(0, Watch())\n"
            "import maxent.cli.main\n"
            "import torch\n"
            "print(seen[0], torch.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True).stdout.split()
    assert out[-2] != "None", "torch loaded before the command chose the thread count"
    assert 1 <= int(out[-2]) <= threads.usable_cores()
    assert int(out[-1]) == int(out[-2])


def test_runs_share_the_cores_and_stop_spinning():
    assert threads.choose_threads(2, 0.0, runs=2) == 1
    assert threads.choose_threads(8, 0.0, runs=2) == 4
    assert threads.choose_threads(2, 0.0, runs=5) == 1
    assert threads.spin_env(CpuShare(2, 0.0, runs=2), {}) == {"OMP_WAIT_POLICY": "PASSIVE"}
    with pytest.raises(ValueError, match="runs must be >= 1"):
        threads.choose_threads(2, 0.0, runs=0)


def test_live_runs_counts_processes_holding_their_file_and_drops_ended_ones(tmp_path):
    import subprocess
    import sys

    folder = str(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from maxent.training import threads; "
         f"threads.register_run({folder!r}, settle_s=0); print('up', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "up"
        (tmp_path / "999999999").write_text("")  # a run that ended without removing its file
        assert threads.live_runs(folder) == 1
        assert sorted(p.name for p in tmp_path.iterdir()) == [str(holder.pid)]
    finally:
        holder.kill()
        holder.wait()
    assert threads.live_runs(folder) == 1  # none alive: at least this process's own share
    assert list(tmp_path.iterdir()) == []
