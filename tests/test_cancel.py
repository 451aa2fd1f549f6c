"""Ctrl-C and cancellation: a generation stops at its next step, streaming or not, with a
KeyboardInterrupt (never an abort); a stream the consumer closes stops its worker; an error in the
worker reaches the consumer."""
import os
import subprocess
import sys
import textwrap

import pytest

import dynin_rt

# The child interrupts itself from a helper thread right after its third block (16 steps each, so a
# check per block would not do) and reports how many blocks finished after the signal and how long
# the stop took, in steps.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    import dynin_rt
    model = dynin_rt.load(sys.argv[1], backend="cpu")
    seen, armed = [], threading.Event()

    def interrupter():
        armed.wait()
        seen.append("signal")
        os.kill(os.getpid(), signal.SIGINT)

    def tick():
        seen.append(time.perf_counter())
        if len(seen) == 3:
            armed.set()

    threading.Thread(target=interrupter, daemon=True).start()
    try:
        if sys.argv[2] == "plain":
            model.generate_text([[1, 2, 3, 4]], gen_length=768, steps=192, block_length=64, on_block=lambda b, c: tick())
        else:
            for part in dynin_rt.generate(model, "hello", max_new_tokens=768, steps=192, block_length=64, stream=True):
                tick()
        print("FINISHED")
    except KeyboardInterrupt:
        end = time.perf_counter()
        times = [t for t in seen if t != "signal"]
        step = (times[2] - times[1]) / 16
        print("INTERRUPTED", len(seen) - seen.index("signal") - 1, (end - times[2]) / step)
    """
)


@pytest.mark.parametrize("mode", ["plain", "stream"])
def test_ctrl_c_stops_within_one_step_without_abort(tiny_omni, runtime_cache, tmp_path, mode):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, DYNIN_RT_CACHE=runtime_cache)
    proc = subprocess.run([sys.executable, str(script), tiny_omni, mode], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "terminate called" not in proc.stderr
    words = proc.stdout.split()
    assert words[0] == "INTERRUPTED", proc.stdout + proc.stderr[-2000:]
    blocks_after, steps_to_stop = int(words[1]), float(words[2])
    # the step running when the signal came may finish; the next one must not start
    assert blocks_after == 0
    assert steps_to_stop < 4, f"stopping took {steps_to_stop:.1f} steps"


def test_closing_a_stream_stops_the_worker(tiny_omni, runtime_cache):
    import threading

    model = dynin_rt.load(tiny_omni, backend="cpu")
    stream = dynin_rt.generate(model, "hello there", max_new_tokens=64, steps=64, block_length=4, stream=True)
    first = next(stream)
    assert first.partial
    stream.close()  # joins the worker, cancelled at its next step
    assert not [t for t in threading.enumerate() if t.name == "dynin_rt-generate"]
    assert model.last_stats is None or model.last_stats.steps < 64


def test_an_error_in_the_worker_reaches_the_consumer(tiny_omni, runtime_cache, monkeypatch):
    from dynin_rt.tasks import common

    model = dynin_rt.load(tiny_omni, backend="cpu")

    def broken(self, *args, **kwargs):
        raise RuntimeError("worker failed")

    monkeypatch.setattr(common.Denoiser, "text", broken)
    with pytest.raises(RuntimeError, match="worker failed"):
        list(dynin_rt.generate(model, "hello", max_new_tokens=8, steps=8, block_length=8, stream=True))


def test_a_cancel_token_stops_a_stream(tiny_omni, runtime_cache):
    model = dynin_rt.load(tiny_omni, backend="cpu")
    token = dynin_rt.CancelToken()
    parts = dynin_rt.generate(model, "hello there", max_new_tokens=64, steps=64, block_length=4, stream=True, cancel=token)
    next(parts)
    token.cancel()
    with pytest.raises(dynin_rt.Cancelled):
        for _ in parts:
            pass
