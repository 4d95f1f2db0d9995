"""``ray-mlops serve`` stops gracefully on SIGTERM as on Ctrl-C (a real process, no Ray)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

SERVER = """
import time
from ray_mlops.runtime import stop_on_sigterm
stop_on_sigterm()
try:
    print("ready", flush=True)  # inside the try: the signal may come right after it
    time.sleep(60)
except KeyboardInterrupt as exc:
    print("interrupted:", exc, flush=True)
finally:
    print("graceful stop ran", flush=True)
"""


def test_sigterm_runs_the_graceful_stop_like_ctrl_c() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "interrupted: signal SIGTERM" in out and "graceful stop ran" in out
    assert time.monotonic() - started < 30
