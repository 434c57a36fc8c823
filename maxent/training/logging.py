"""Run logging shared by every agent: TensorBoard scalars, a ``progress.csv`` and a tqdm bar.

Metrics use the standard names below so runs of different algorithms line up in one TensorBoard.
"""

import csv as csv_module
import numbers
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

EP_RETURN = "rollout/ep_return"
REWARD = "rollout/reward"
EP_LENGTH = "rollout/ep_length"
CRITIC_LOSS = "train/critic_loss"
ACTOR_LOSS = "train/actor_loss"
ALPHA_LOSS = "train/alpha_loss"
POLICY_ENTROPY = "entropy/policy"
ALPHA = "temperature/alpha"
FPS = "time/fps"
EVAL_RETURN = "eval/mean_return"
EVAL_RETURN_STD = "eval/std_return"

CSV_FILE = "progress.csv"


class RunLogger:
    """Accumulates scalar metrics and writes their means to TensorBoard and CSV at each dump.

    ``record`` never synchronizes with the GPU: tensors are summed on their device and converted
    to floats once per ``dump``.

    Args:
        log_dir: directory for TensorBoard event files and ``progress.csv``; None writes nothing.
        tensorboard: write TensorBoard event files (the writer is created at the first dump).
        csv: write ``progress.csv``, appending to an existing one so resumed runs keep old rows.
        progress_bar: show progress on stderr, advanced by :meth:`progress`: a tqdm bar on a
            terminal or in a notebook, one line per update elsewhere (a log file keeps each
            update once).
        total_steps: the bar's total; None for an open-ended bar.
        initial_step: where the bar starts, e.g. the step a resumed run continues from. Rows of an
            existing ``progress.csv`` logged after it (by a run killed after its last
            checkpoint) are dropped at the first dump, so the file has each step once.
    """

    def __init__(
        self,
        log_dir: str | Path | None,
        *,
        tensorboard: bool = True,
        csv: bool = True,
        progress_bar: bool = False,
        total_steps: int | None = None,
        initial_step: int = 0,
    ):
        self.log_dir = None if log_dir is None else Path(log_dir)
        if self.log_dir is not None and (tensorboard or csv):
            if self.log_dir.exists() and not self.log_dir.is_dir():
                raise NotADirectoryError(
                    f"log_dir {self.log_dir} exists and is a file; pass a directory path"
                )
            self.log_dir.mkdir(parents=True, exist_ok=True)
        self._use_tensorboard = tensorboard and self.log_dir is not None
        self._use_csv = csv and self.log_dir is not None
        self._writer = None  # SummaryWriter, created at the first dump
        self._csv_fields: list[str] | None = None  # header of progress.csv once known
        self._initial_step = initial_step
        self._last_csv_step: int | None = None
        self._sums: dict[str, Any] = {}  # name -> float or 0-dim tensor
        self._counts: dict[str, int] = {}
        self.latest: dict[str, float] = {}
        self._bar: Any = None
        if progress_bar:
            stream = sys.stderr
            if _is_terminal(stream) or _in_notebook():
                from tqdm.auto import tqdm

                self._bar = tqdm(total=total_steps, initial=initial_step, unit="step",
                                 dynamic_ncols=True, file=stream)
            else:
                self._bar = _LineProgress(stream, total_steps, initial_step)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def has_bar(self) -> bool:
        return self._bar is not None

    @property
    def csv_path(self) -> Path | None:
        """Path of ``progress.csv``, or None when CSV logging is off."""
        return self.log_dir / CSV_FILE if self._use_csv else None

    def record(self, name: str, value: Any) -> None:
        """Add one value to the running mean of ``name`` until the next :meth:`dump`.

        Args:
            name: metric name, e.g. :data:`CRITIC_LOSS`.
            value: a Python number, numpy scalar, or one-element torch tensor (kept on its
                device; no host sync happens here).
        """
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ValueError(
                    f"record({name!r}, ...) needs a scalar, got a tensor of shape "
                    f"{tuple(value.shape)}; reduce it first, e.g. with .mean()"
                )
            value = value.detach().reshape(())
            if value.dtype not in (torch.float32, torch.float64):
                value = value.float()  # half precision loses accuracy when summed; ints/bools
        elif isinstance(value, (numbers.Real, np.number, np.bool_)):
            value = float(value)
        elif isinstance(value, np.ndarray) and value.size == 1:
            value = float(value.reshape(()))
        else:
            raise TypeError(
                f"record({name!r}, ...) needs a number or scalar tensor, got {type(value).__name__}"
            )
        if name in self._sums:
            self._sums[name] = self._sums[name] + value
            self._counts[name] += 1
        else:
            self._sums[name] = value
            self._counts[name] = 1

    def record_many(self, names: tuple[str, ...], values: torch.Tensor) -> None:
        """:meth:`record` of ``values[i]`` under ``names[i]``, as one running sum of the stacked
        tensor (one op instead of one per metric on the hot path of a training loop)."""
        key = ("__many__", names)
        if key in self._sums:
            self._sums[key] = self._sums[key] + values.detach()
            self._counts[key] += 1
        else:
            self._sums[key] = values.detach().to(torch.float64 if values.device.type != "mps"
                                                 else torch.float32)
            self._counts[key] = 1

    def peek(self, name: str) -> float | None:
        """The mean of ``name`` recorded since the last dump (None if nothing was): the value the
        next :meth:`dump` will write. Converts to a float, so a GPU value costs a sync."""
        if name not in self._sums:
            return None
        return float(self._sums[name]) / self._counts[name]

    def dump(self, step: int) -> dict[str, float]:
        """Write the means recorded since the last dump at ``step`` and reset them.

        Args:
            step: the x-axis value (environment steps) for TensorBoard and the CSV ``step`` column.

        Returns:
            name -> mean, as Python floats; empty when nothing was recorded (nothing is written).
        """
        if not self._sums:
            return {}
        for key in [k for k in self._sums if isinstance(k, tuple)]:  # record_many's stacks
            stacked, count = self._sums.pop(key), self._counts.pop(key)
            for name, value in zip(key[1], stacked.unbind(0)):
                self._sums[name] = value
                self._counts[name] = count
        sums = _to_floats(self._sums)
        means = {name: sums[name] / self._counts[name] for name in self._sums}
        self._sums.clear()
        self._counts.clear()
        if self._use_tensorboard:
            self._write_tensorboard(step, means)
        if self._use_csv:
            self._write_csv(step, means)
        self.latest = means
        return dict(means)

    def text(self, name: str, markdown: str, step: int) -> None:
        """Write ``markdown`` (e.g. a table of sample completions) to TensorBoard's text tab."""
        if not self._use_tensorboard:
            return
        self._ensure_writer()
        self._writer.add_text(name, markdown, global_step=step)
        self._writer.flush()

    def progress(self, step: int, **postfix: Any) -> None:
        """Move the progress bar to ``step`` and show ``postfix`` (e.g. ``fps=...``); no-op without a bar.

        Args:
            step: the current step.
            **postfix: values shown after the bar; pass floats, not GPU tensors (formatting
                a tensor forces a host sync).
        """
        bar = self._bar
        if bar is None:
            return
        if postfix:
            bar.set_postfix(postfix, refresh=False)
        if step >= bar.n:
            bar.update(step - bar.n)
        else:
            bar.n = step
            bar.refresh()

    def close_progress(self) -> None:
        """Close the progress bar (at the end of ``learn``), so that what is printed next starts on
        a line of its own and the bar's time and rate stop counting; the logger stays open."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        """Flush and close the TensorBoard writer and the progress bar; safe to call twice.

        Values recorded since the last dump are discarded: call :meth:`dump` first to keep them.
        """
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.close_progress()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writers ------------------------------------------------------------------------------

    def _ensure_writer(self) -> None:
        if self._writer is None:
            # Imported here: tensorboard is slow to import and only needed once something is due.
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def _write_tensorboard(self, step: int, means: dict[str, float]) -> None:
        self._ensure_writer()
        for name, value in means.items():
            self._writer.add_scalar(name, value, global_step=step)
        self._writer.flush()

    def _write_csv(self, step: int, means: dict[str, float]) -> None:
        path = self.csv_path
        if self._csv_fields is None:
            self._csv_fields = _read_csv_header(path)
            if self._csv_fields:
                _drop_rows_after(path, self._csv_fields, self._initial_step)
        fields = self._csv_fields
        new = [name for name in means if name not in fields]
        if not fields:
            fields = ["step", *new]
            with open(path, "w", newline="", encoding="utf-8") as f:
                csv_module.writer(f).writerow(fields)
        elif new:
            fields = [*fields, *new]
            _rewrite_csv(path, fields)
        self._csv_fields = fields
        row = {"step": step, **means}
        if step == self._last_csv_step:
            # A second dump at the same step (e.g. the final evaluation after the last training
            # row) joins that row instead of repeating the step.
            _merge_last_row(path, fields, row)
        else:
            with open(path, "a", newline="", encoding="utf-8") as f:
                csv_module.DictWriter(f, fieldnames=fields, restval="").writerow(row)
        self._last_csv_step = step


def rate_text(steps_per_s: float) -> str:
    """A training speed as people read it: "250 steps/s", "3.4 steps/s", or, for runs slower than
    one step a second (an LLM on a CPU), "121 s/step" rather than a rounded "0 steps/s"."""
    if not steps_per_s > 0:
        return "0 steps/s"
    if steps_per_s >= 10:
        return f"{steps_per_s:.0f} steps/s"
    if steps_per_s >= 1:
        return f"{steps_per_s:.1f} steps/s"
    seconds = 1 / steps_per_s
    return f"{seconds:.0f} s/step" if seconds >= 10 else f"{seconds:.1f} s/step"


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _in_notebook() -> bool:
    """A Jupyter kernel, whose output is no terminal but shows tqdm's widget."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    return shell is not None and hasattr(shell, "kernel")


class _LineProgress:
    """The progress bar where its stream is not a terminal (a log file, a pipe): one plain line
    per update, since a bar redrawn with carriage returns piles every redraw into one line of
    the log. Takes the calls :meth:`RunLogger.progress` makes of a tqdm bar."""

    def __init__(self, stream: Any, total: int | None, initial: int):
        self._stream, self.total, self.n = stream, total, initial
        self._start, self._start_step = time.perf_counter(), initial
        self._postfix: dict[str, Any] = {}
        self._printed: int | None = None

    def set_postfix(self, postfix: dict[str, Any], refresh: bool = False) -> None:
        self._postfix = dict(postfix)

    @property
    def postfix(self) -> str:
        """The figures after the rate, as tqdm's ``postfix`` shows them."""
        return ", ".join(f"{k}={v}" for k, v in self._postfix.items())

    def update(self, n: int) -> None:
        self.n += n
        if self.n != self._printed:  # a repeated step has its line already
            self.refresh()

    def refresh(self) -> None:
        elapsed = time.perf_counter() - self._start
        where = f"step {self.n:,}" + (f"/{self.total:,} ({100 * self.n / self.total:.0f}%)"
                                      if self.total else "")
        rate = (self.n - self._start_step) / elapsed if elapsed > 0 else 0.0
        extra = f", {self.postfix}" if self._postfix else ""
        print(f"{where}, {elapsed:.0f} s, {rate_text(rate)}{extra}", file=self._stream, flush=True)
        self._printed = self.n

    def close(self) -> None:
        """Nothing to print: every update already has its line."""


def _to_floats(sums: dict[str, Any]) -> dict[str, float]:
    """Convert sums to floats with one host transfer per device (not one per metric)."""
    out = {name: v for name, v in sums.items() if isinstance(v, float)}
    by_device: dict[torch.device, list[str]] = {}
    for name, v in sums.items():
        if isinstance(v, torch.Tensor):
            by_device.setdefault(v.device, []).append(name)
    for names in by_device.values():
        dtype = torch.float32 if names and sums[names[0]].device.type == "mps" else torch.float64
        stacked = torch.stack([sums[n].to(dtype) for n in names])  # mps has no float64
        for name, value in zip(names, stacked.tolist(), strict=True):
            out[name] = value
    return out


def _read_csv_header(path: Path) -> list[str]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    with open(path, newline="", encoding="utf-8") as f:
        header = next(csv_module.reader(f), [])
    if not header or header[0] != "step":
        raise ValueError(
            f"{path} exists but its first column is not 'step', so it was not written by "
            "maxent; choose another log_dir or move the file away"
        )
    return header


def _rewrite_csv(path: Path, fields: list[str], rows: list[dict] | None = None) -> None:
    """Rewrite ``path`` with the header ``fields`` and ``rows`` (default: its own rows, which get
    blanks in new columns), atomically."""
    if rows is None:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv_module.DictReader(f))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv_module.DictWriter(f, fieldnames=fields, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)  # a crash mid-rewrite leaves the old file intact


def _drop_rows_after(path: Path, fields: list[str], step: int) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv_module.DictReader(f))
    kept = [r for r in rows if not _step_of(r) > step]
    if len(kept) < len(rows):
        _rewrite_csv(path, fields, kept)


def _step_of(row: dict) -> float:
    try:
        return float(row.get("step") or "nan")
    except ValueError:
        return float("nan")


def _merge_last_row(path: Path, fields: list[str], row: dict) -> None:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv_module.DictReader(f))
    rows[-1] = {**rows[-1], **{k: v for k, v in row.items()}}
    _rewrite_csv(path, fields, rows)


class LogSchedule:
    """When to write a log row during ``learn``, and the env-steps/s since the last one.

    Rows fall on multiples of ``interval`` env steps (so a resumed run logs at the same steps as an
    uninterrupted one) and at ``end``. ``due(step)`` returns the fps of the window it closes, or
    ``None`` when no row is due.
    """

    def __init__(self, interval: int, start_step: int, end: int):
        self.interval, self.end = interval, end
        self._next = (start_step // interval + 1) * interval
        self._window_time, self._window_step = time.perf_counter(), start_step

    def due(self, step: int) -> float | None:
        if step < self._next and step < self.end:
            return None
        self._next = (step // self.interval + 1) * self.interval
        now = time.perf_counter()
        fps = (step - self._window_step) / max(now - self._window_time, 1e-9)
        self._window_time, self._window_step = now, step
        return fps
