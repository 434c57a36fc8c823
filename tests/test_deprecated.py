"""Old import paths of moved modules still import for one release, warn naming the new path, and
give the new module itself."""

import importlib
import subprocess
import sys

import pytest

from maxent.deprecated import MOVED


@pytest.mark.parametrize("old,new", sorted(MOVED.items()))
def test_an_old_path_warns_and_is_the_new_module(old, new):
    code = (f"import warnings, importlib\n"
            f"new = importlib.import_module({new!r})\n"
            f"with warnings.catch_warnings(record=True) as caught:\n"
            f"    warnings.simplefilter('always')\n"
            f"    old = importlib.import_module({old!r})\n"
            f"assert old is new, (old, new)\n"
            f"print([str(w.message) for w in caught if w.category is DeprecationWarning])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"{old} moved to {new}" in out.stdout


def test_from_an_old_path_gives_the_same_objects():
    with pytest.warns(DeprecationWarning, match="maxent.entropy.temperature"):
        old = importlib.import_module("maxent.temperature")
    from maxent.entropy import temperature

    assert old is temperature
    with pytest.warns(DeprecationWarning):
        from maxent.lm import build_char_tokenizer
    from maxent.llm.models import build_char_tokenizer as new

    assert build_char_tokenizer is new
