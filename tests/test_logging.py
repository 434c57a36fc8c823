"""Tests for maxent/training/logging.py: running means without host syncs, progress.csv headers and
appends, TensorBoard event files, and writing nothing without a log_dir."""

import csv

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from maxent.training import logging as mlog
from maxent.training.logging import CRITIC_LOSS, EP_RETURN, FPS, RunLogger


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_metric_names():
    assert mlog.EP_RETURN == "rollout/ep_return"
    assert mlog.EP_LENGTH == "rollout/ep_length"
    assert mlog.CRITIC_LOSS == "train/critic_loss"
    assert mlog.ACTOR_LOSS == "train/actor_loss"
    assert mlog.ALPHA_LOSS == "train/alpha_loss"
    assert mlog.POLICY_ENTROPY == "entropy/policy"
    assert mlog.ALPHA == "temperature/alpha"
    assert mlog.FPS == "time/fps"
    assert mlog.EVAL_RETURN == "eval/mean_return"
    assert mlog.EVAL_RETURN_STD == "eval/std_return"


def test_running_mean_with_mixed_inputs(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.record(CRITIC_LOSS, torch.tensor(1.0))
        log.record(CRITIC_LOSS, torch.tensor([2.0], requires_grad=True) * 1)  # 1-element, grad
        log.record(CRITIC_LOSS, 3)
        log.record(CRITIC_LOSS, np.float32(6.0))
        log.record(EP_RETURN, torch.tensor(5, dtype=torch.int64))
        log.record(EP_RETURN, torch.tensor(2.0, dtype=torch.bfloat16))
        log.record(FPS, np.int64(100))
        out = log.dump(10)
        assert out == {CRITIC_LOSS: 3.0, EP_RETURN: 3.5, FPS: 100.0}
        assert all(type(v) is float for v in out.values())
        assert log.latest == out
        # Accumulators are cleared: the next mean only sees new values.
        log.record(CRITIC_LOSS, torch.tensor(10.0))
        assert log.dump(20) == {CRITIC_LOSS: 10.0}
        assert log.latest == {CRITIC_LOSS: 10.0}
        # Nothing recorded: nothing written, latest kept.
        assert log.dump(30) == {}
        assert log.latest == {CRITIC_LOSS: 10.0}


def test_record_does_not_sync(monkeypatch):
    log = RunLogger(None)

    def no_sync(*args, **kwargs):
        raise AssertionError("record() must not convert tensors to Python numbers")

    for attr in ("item", "tolist", "__float__", "__bool__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, attr, no_sync)
    for i in range(5):
        log.record(CRITIC_LOSS, torch.tensor(float(i)))
    monkeypatch.undo()
    assert log.dump(1) == {CRITIC_LOSS: 2.0}


def test_record_rejects_non_scalars():
    log = RunLogger(None)
    with pytest.raises(ValueError, match=r"train/critic_loss.*shape \(3,\)"):
        log.record(CRITIC_LOSS, torch.zeros(3))
    with pytest.raises(TypeError, match="str"):
        log.record(CRITIC_LOSS, "1.0")


def test_csv_rows_and_header(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.record(CRITIC_LOSS, 1.5)
        log.record(EP_RETURN, -2.0)
        log.dump(100)
        log.record(EP_RETURN, 4.0)
        log.record(CRITIC_LOSS, 0.25)
        log.dump(200)
    rows = _rows(tmp_path / "progress.csv")
    assert rows[0] == ["step", CRITIC_LOSS, EP_RETURN]
    assert rows[1:] == [["100", "1.5", "-2.0"], ["200", "0.25", "4.0"]]
    assert list(tmp_path.glob("events.out.tfevents*")) == []


def test_csv_header_extension_fills_blanks(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.record(CRITIC_LOSS, 1.0)
        log.dump(1)
        log.record(CRITIC_LOSS, 2.0)
        log.dump(2)
        log.record(FPS, 50.0)  # a metric that first appears later, e.g. after warm-up
        log.dump(3)
        log.record(CRITIC_LOSS, 3.0)
        log.record(FPS, 60.0)
        log.dump(4)
    rows = _rows(tmp_path / "progress.csv")
    assert rows == [
        ["step", CRITIC_LOSS, FPS],
        ["1", "1.0", ""],
        ["2", "2.0", ""],
        ["3", "", "50.0"],
        ["4", "3.0", "60.0"],
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.csv"]  # no temp file left


def test_csv_appends_on_reopen(tmp_path):
    with RunLogger(tmp_path, tensorboard=False) as log:
        log.record(CRITIC_LOSS, 1.0)
        log.dump(1)
    # A resumed run: the earlier rows survive, the header is kept and extended when needed.
    with RunLogger(tmp_path, tensorboard=False, initial_step=1) as log:
        log.record(CRITIC_LOSS, 2.0)
        log.dump(2)
        log.record(EP_RETURN, 7.0)
        log.dump(3)
    assert _rows(tmp_path / "progress.csv") == [
        ["step", CRITIC_LOSS, EP_RETURN],
        ["1", "1.0", ""],
        ["2", "2.0", ""],
        ["3", "", "7.0"],
    ]


def test_refuses_foreign_csv(tmp_path):
    (tmp_path / "progress.csv").write_text("name,score\nalice,3\n")
    log = RunLogger(tmp_path, tensorboard=False)
    log.record(CRITIC_LOSS, 1.0)
    with pytest.raises(ValueError, match="progress.csv.*'step'"):
        log.dump(1)
    assert (tmp_path / "progress.csv").read_text() == "name,score\nalice,3\n"


def test_tensorboard_event_file_is_readable(tmp_path):
    log = RunLogger(tmp_path, csv=False)
    assert list(tmp_path.iterdir()) == []  # the writer is created lazily
    for step in (10, 20):
        log.record(CRITIC_LOSS, torch.tensor(step / 10))
        log.record(CRITIC_LOSS, torch.tensor(step / 10 + 1))
        log.record(EP_RETURN, step)
        log.dump(step)
    # Readable while the run is still going (dump flushes), not only after close().
    live = EventAccumulator(str(tmp_path))
    live.Reload()
    assert [e.step for e in live.Scalars(EP_RETURN)] == [10, 20]
    log.close()
    log.close()  # idempotent
    assert not (tmp_path / "progress.csv").exists()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {CRITIC_LOSS, EP_RETURN}
    loss = acc.Scalars(CRITIC_LOSS)
    assert [e.step for e in loss] == [10, 20]
    assert [e.value for e in loss] == pytest.approx([1.5, 2.5])
    assert [e.value for e in acc.Scalars(EP_RETURN)] == pytest.approx([10.0, 20.0])


def test_no_files_without_log_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with RunLogger(None) as log:
        log.record(CRITIC_LOSS, 1.0)
        assert log.dump(1) == {CRITIC_LOSS: 1.0}
        log.progress(1, fps=10.0)
    assert log.csv_path is None
    assert list(tmp_path.iterdir()) == []


def test_progress_bar(capsys):
    with RunLogger(None, progress_bar=True, total_steps=100, initial_step=10) as log:
        assert log._bar.n == 10 and log._bar.total == 100
        log.progress(40, fps=123.0, ret=-5.5)
        assert log._bar.n == 40
        assert log._bar.postfix is not None and "fps=123" in log._bar.postfix
        log.progress(100)
        assert log._bar.n == 100
    err = capsys.readouterr().err
    assert "100/100" in err


def test_progress_without_bar_is_cheap():
    log = RunLogger(None)
    for step in range(1000):
        log.progress(step, fps=1.0)
    assert log._bar is None


def test_log_schedule_falls_on_interval_multiples_and_the_end():
    from maxent.training.logging import LogSchedule

    schedule = LogSchedule(interval=100, start_step=250, end=520)  # a resumed run
    due = [step for step in range(251, 521) if schedule.due(step) is not None]
    assert due == [300, 400, 500, 520]
    fresh = LogSchedule(interval=100, start_step=0, end=150)
    assert fresh.due(50) is None
    fps = fresh.due(100)
    assert fps is not None and fps > 0


def test_rate_text_never_rounds_a_slow_run_to_zero():
    from maxent.training.logging import rate_text

    assert rate_text(257.4) == "257 steps/s"
    assert rate_text(3.44) == "3.4 steps/s"
    assert rate_text(12 / 1448.9) == "121 s/step"  # an LLM run on a CPU, not "0 steps/s"
    assert rate_text(0.4) == "2.5 s/step"
    assert rate_text(0.0) == "0 steps/s"
