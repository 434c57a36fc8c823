"""MkDocs hook: publish the result pages that live beside their data under benchmarks/results/.

Each result page (a README.md with its CSVs and plots) is added to the site at its repository
path, so its relative image and data links work unchanged. Links are written as GitHub resolves them:
from docs/ to ``../benchmarks/results/...`` and from a result page back to ``../../../docs/...``.
The site has no docs/ level, so one ``../`` is dropped from the first kind and ``docs/`` from the
second.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

REPO = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/results"
_UP_TO_RESULTS = re.compile(r"\]\(((?:\.\./)+)" + re.escape(RESULTS) + "/")
_UP_TO_DOCS = re.compile(r"\]\(((?:\.\./)+)docs/")


def on_files(files: Files, config) -> Files:
    for path in sorted((REPO / RESULTS).rglob("*")):
        if path.is_file() and not path.name.startswith("."):
            files.append(File(path.relative_to(REPO).as_posix(), str(REPO), config["site_dir"],
                              config["use_directory_urls"]))
    return files


def on_page_markdown(markdown: str, page, config, files) -> str:
    if page.file.src_uri.startswith(RESULTS + "/"):
        return _UP_TO_DOCS.sub(lambda m: "](" + m.group(1), markdown)
    return _UP_TO_RESULTS.sub(lambda m: "](" + m.group(1)[3:] + RESULTS + "/", markdown)
