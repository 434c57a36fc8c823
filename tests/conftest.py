"""Shared pytest configuration: Hypothesis profiles, so that a CI run draws the same examples every
time (a fresh clone has no example database, and random draws would make a failure a lottery)
while local runs keep exploring new examples.

Profiles: ``ci`` (derandomized, no example database) is selected when the environment variable
``CI`` is set to anything but ``""``, ``0`` or ``false`` (``.ci/run`` runs under ``CI=true``);
``dev`` (Hypothesis' random exploration) otherwise. ``HYPOTHESIS_PROFILE=<name>`` overrides both.
"""

import os

import pytest
from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
# Explicitly random: Hypothesis loads a derandomized profile of its own when it detects CI.
settings.register_profile("dev", derandomize=False, print_blob=True)


def _profile() -> str:
    explicit = os.environ.get("HYPOTHESIS_PROFILE")
    if explicit:
        return explicit
    ci = os.environ.get("CI", "").strip().lower()
    return "ci" if ci not in ("", "0", "false", "no") else "dev"


settings.load_profile(_profile())


@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one intra-op thread for a module of tiny networks, where a second thread only adds
    synchronisation; the previous count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
