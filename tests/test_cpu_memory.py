"""maxent.llm.cpu_memory: freed memory stays in the process, so re-allocating it costs no page faults.
Each check runs in a fresh interpreter, because the setting is process-wide and permanent."""

import json
import os
import subprocess
import sys

import pytest

from maxent.llm import cpu_memory
pytestmark = pytest.mark.skipif(cpu_memory._glibc() is None, reason="needs Linux with glibc")

# Allocates, fills and frees a 64 MiB block six times; prints whether memory was kept and the
# page faults of each round after the first.
_PROBE = """
import ctypes, json, resource, sys
from maxent.llm import cpu_memory
{setup}
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(64 << 20)
    ctypes.memset(block, 1, 64 << 20)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({{"kept": kept, "faults": faults[1:]}}))
"""
_PAGES = (64 << 20) // os.sysconf("SC_PAGE_SIZE")


def _probe(setup: str, **env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PROBE.format(setup=setup)], check=True,
                         capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_keep_freed_memory_reuses_pages_instead_of_faulting_them_in_again():
    kept = _probe("kept = cpu_memory.keep_freed_memory()")
    assert kept["kept"] is True
    assert max(kept["faults"]) < 0.05 * _PAGES
    # glibc's own behaviour, which the setting changes: each round faults the block in again.
    system = _probe("kept = False")
    assert min(system["faults"]) > 0.9 * _PAGES


def test_opt_out_variable_leaves_the_allocator_alone():
    out = _probe("kept = cpu_memory.keep_freed_memory()", MAXENT_KEEP_FREED_MEMORY="0")
    assert out["kept"] is False
    assert min(out["faults"]) > 0.9 * _PAGES


@pytest.mark.parametrize("keep", [True, False])
def test_grpo_on_cpu_keeps_freed_memory_unless_configured_off(keep):
    setup = ("from maxent.agents.grpo import GRPO, GRPOConfig\n"
             f"GRPO(config=GRPOConfig(device='cpu', keep_freed_memory={keep}))\n"
             "kept = cpu_memory.keep_freed_memory.cache_info().currsize > 0")
    out = _probe(setup)
    assert out["kept"] is keep
    if keep:
        assert max(out["faults"]) < 0.05 * _PAGES
    else:
        assert min(out["faults"]) > 0.9 * _PAGES
