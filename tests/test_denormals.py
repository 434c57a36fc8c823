"""Flush-to-zero reaches every compute thread, and SAC turns it on unless told not to.

Each check runs in a fresh interpreter: the floating-point mode is per process and sticky."""

import subprocess
import sys
import textwrap

import pytest

PROBE = """
import torch
torch.set_num_threads(2)
values = torch.full((4_000_000,), 1e-30)  # split across both threads by torch's parallel_for
def flushed_fraction():
    return ((values * 1e-10) == 0).float().mean().item()  # 1e-40 is denormal unless flushed
print(flushed_fraction())
"""


def run_probe(body: str) -> list[float]:
    out = subprocess.run([sys.executable, "-c", PROBE + textwrap.dedent(body)],
                         capture_output=True, text=True, check=True, timeout=120)
    return [float(line) for line in out.stdout.split()]


def test_flush_denormals_reaches_every_openmp_thread():
    before, main_thread_only, everywhere = run_probe("""
        torch.set_flush_denormal(True)
        print(flushed_fraction())
        from maxent.training.denormals import flush_denormals
        assert flush_denormals()
        print(flushed_fraction())
    """)
    assert before == 0.0
    assert 0.0 < main_thread_only < 1.0  # torch's own switch misses the worker thread
    assert everywhere == 1.0


@pytest.mark.parametrize("flush", [True, False])
def test_sac_flushes_denormals_while_it_learns_unless_told_not_to(flush):
    """On for the length of learn, the previous mode back after (Hypothesis, for one, refuses to
    run in a process that flushes)."""
    before, during, after = run_probe(f"""
        from maxent.training.agent import FunctionCallback
        from maxent.agents import SAC
        seen = []
        SAC("Pendulum-v1", flush_denormals={flush}, compile=False, learning_starts=10).learn(
            12, callback=FunctionCallback(lambda agent: seen.append(flushed_fraction())))
        print(seen[-1])
        print(flushed_fraction())
    """)
    assert before == 0.0
    assert during == (1.0 if flush else 0.0)
    assert after == 0.0


def test_the_mode_a_user_set_survives_learn():
    before, after = run_probe("""
        from maxent.agents import SAC
        from maxent.training.denormals import denormals_flushed, flush_denormals
        assert flush_denormals() and denormals_flushed()
        SAC("Pendulum-v1", compile=False, learning_starts=10).learn(12)
        print(flushed_fraction())
    """)
    assert before == 0.0 and after == 1.0
