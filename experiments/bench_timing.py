"""Timing for the benchmarks: median over repeats after warm-up, CUDA events on a GPU."""

from __future__ import annotations

import platform
import statistics
import time

import torch


def time_call(fn, device: torch.device, repeats: int = 5, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones.

    On CUDA each call is bracketed by events and the host waits only after the last one, so
    the timed region holds no host synchronisation of ours."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
        for start, end in events:
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        return statistics.median(s.elapsed_time(e) / 1000.0 for s, e in events)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_interleaved(fns: dict, device: torch.device, repeats: int = 5, warmup: int = 2) -> dict:
    """Median seconds of each ``fns[name]()``, the calls taken in turn (a, b, c, a, b, c, ...).

    Side-by-side figures on a shared machine: a burst of load then slows every contender in
    the same round instead of one of them, so their ratio stays meaningful."""
    times = {name: [] for name in fns}
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_call(fn, device, repeats=1, warmup=0))
    return {name: statistics.median(t) for name, t in times.items()}


def _cpu_model() -> str:
    """The CPU's model name (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    """What produced the numbers: host, CPU model and count, threads, device name, versions."""
    info = dict(
        host=platform.node(),
        platform=platform.platform(),
        processor=_cpu_model(),
        cpu_count=__import__("os").cpu_count(),
        torch_threads=torch.get_num_threads(),
        python=platform.python_version(),
        torch=torch.__version__,
        device=str(device),
    )
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device_name=props.name,
            device_memory_gib=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
        )
    else:
        info.update(device_name=info["processor"])
    return info
