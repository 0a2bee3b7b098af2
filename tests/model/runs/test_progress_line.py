"""The progress line printed instead of a bar when output is a file or a pipe."""

import io
import time

from deepfusion.model.runs.progress_line import Heartbeat, ProgressLine, clock


class FakeTimer:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_comes_once_per_interval_with_rate_and_eta():
    timer, out = FakeTimer(), io.StringIO()
    line = ProgressLine(100, desc="run", stream=out, interval=25, timer=timer)
    for _ in range(20):  # one step per 2 s: 0.5 steps/s
        timer.now += 2
        line.update()
        line.set_postfix(loss="1.2345")
    printed = out.getvalue().splitlines()
    assert len(printed) == 1  # at 26 s, not before (13 steps)
    assert printed[0] == "run  step 13/100 (13%)  0.50 steps/s  elapsed 0:26  ETA 2:54  loss=1.2345"


def test_gaps_between_lines_stay_under_thirty_seconds_when_steps_are_short():
    timer, out = FakeTimer(), io.StringIO()
    line = ProgressLine(1000, stream=out, timer=timer)
    times = []
    for _ in range(400):
        timer.now += 0.7
        before = out.getvalue().count("\n")
        line.update()
        if out.getvalue().count("\n") > before:
            times.append(timer.now)
    gaps = [b - a for a, b in zip([0.0, *times], times)]
    assert gaps and max(gaps) < 30


def test_a_resumed_run_measures_its_rate_from_the_resume_and_close_prints_the_end():
    timer, out = FakeTimer(), io.StringIO()
    line = ProgressLine(200, initial=100, stream=out, interval=1000, timer=timer)
    for _ in range(50):
        timer.now += 1
        line.update()
    line.close()
    assert out.getvalue().strip() == "step 150/200 (75%)  1.00 steps/s  elapsed 0:50  ETA 0:50"


def test_close_without_steps_prints_nothing():
    out = io.StringIO()
    ProgressLine(10, stream=out).close()
    assert out.getvalue() == ""


def test_clock_format():
    assert (clock(5), clock(65), clock(3725)) == ("0:05", "1:05", "1:02:05")


def test_training_into_a_pipe_prints_plain_progress_lines(tmp_path, capfd):
    from deepfusion.model.runs.config import load_config
    from deepfusion.model.runs.loop import train

    tiny = [
        "train.epochs=1",
        "data.options.num_classes=4",
        "data.options.samples_per_class=40",
        "train.batch_size=32",
        "train.device=cpu",
        "train.threads=1",
        "model.dim=16",
        "model.depth=1",
        "model.heads=2",
        "model.ffn_dim=16",
        "model.out_dim=8",
        "eval.linear_epochs=2",
        "eval.head_batch=32",
        "eval.knn_k=5",
        f"train.out_dir={tmp_path}",
    ]
    train(load_config("synthetic", tiny), progress=True)  # pytest's stderr is not a terminal
    err = capfd.readouterr().err
    assert "\r" not in err
    assert " step 4/4 (100%) " in err and "ETA 0:00" in err


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_heartbeat_writes_lines_with_an_eta_to_a_file_while_work_runs():
    out = io.StringIO()
    with Heartbeat("analyze", total=4, stream=out, interval=0.02) as beat:
        beat.done = 1
        time.sleep(0.15)  # several intervals of silent work
    lines = out.getvalue().splitlines()
    assert len(lines) >= 2
    assert all(line.startswith("analyze: working, elapsed 0:00  1/4 done  ETA ") for line in lines)


def test_heartbeat_is_silent_on_a_terminal_and_stops_with_its_block():
    out, tty = io.StringIO(), Tty()
    with Heartbeat("eval", stream=tty, interval=0.01):
        time.sleep(0.05)
    assert tty.getvalue() == ""
    with Heartbeat("eval", stream=out, interval=0.01):
        time.sleep(0.05)
    after = out.getvalue()
    time.sleep(0.05)
    assert after.startswith("eval: working, elapsed") and out.getvalue() == after  # nothing once the block ended
