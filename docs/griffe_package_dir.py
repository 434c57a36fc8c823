"""Griffe extension for the API reference: load the subpackages that pyproject.toml's
``[tool.setuptools.package-dir]`` installs from outside maxent/ (``maxent.agents`` from agents/,
``maxent.envs`` from envs/), which griffe's file finder cannot see under maxent/.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import griffe

REPO = Path(__file__).resolve().parents[1]


class PackageDir(griffe.Extension):
    """Attach each mapped folder to its parent package once that package is loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs) -> None:
        pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
        for dotted, folder in pyproject["tool"]["setuptools"].get("package-dir", {}).items():
            top, _, name = dotted.partition(".")
            if top == pkg.name and name and "." not in name and name not in pkg.members:
                pkg.set_member(name, _load_folder(name, REPO / folder, pkg, loader))


def _load_folder(name: str, folder: Path, parent: griffe.Module,
                 loader: griffe.GriffeLoader) -> griffe.Module:
    package = _visit(name, folder / "__init__.py", parent, loader)
    for path in sorted(folder.iterdir()):
        if path.suffix == ".py" and path.stem != "__init__":
            package.set_member(path.stem, _visit(path.stem, path, package, loader))
        elif path.is_dir() and (path / "__init__.py").exists():
            package.set_member(path.name, _load_folder(path.name, path, package, loader))
    return package


def _visit(name: str, path: Path, parent: griffe.Module, loader: griffe.GriffeLoader) -> griffe.Module:
    return griffe.visit(name, path, path.read_text(encoding="utf-8"), parent=parent,
                        extensions=loader.extensions, docstring_parser=loader.docstring_parser,
                        docstring_options=loader.docstring_options,
                        lines_collection=loader.lines_collection,
                        modules_collection=loader.modules_collection)
