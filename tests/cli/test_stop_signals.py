"""Ctrl-C / SIGTERM under the command line's handlers (``cli._args.stop_signals``): raised as
``KeyboardInterrupt`` subclasses with their exit codes, and recorded so that a bulk write stops at
its next item even when the first exception was swallowed (by a C extension or a finaliser)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from radiobject import ImageData, VolumeCollection
from radiobject._os import interrupts
from radiobject._os.interrupts import Interrupted
from radiobject.cli._args import Terminated, interrupt_exit_code, stop_signals


def _images(n: int) -> dict[str, ImageData]:
    return {f"s{i}": ImageData(np.full((6, 5, 4), i, np.int16), np.eye(4), {}, f"syn/{i}") for i in range(n)}


@pytest.mark.parametrize(
    ("sig", "kind", "code"), [(signal.SIGINT, Interrupted, 130), (signal.SIGTERM, Terminated, 143)]
)
def test_a_stop_signal_raises_its_kind_and_exit_code(sig: int, kind: type, code: int) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(kind) as info, stop_signals():
        os.kill(os.getpid(), sig)
        time.sleep(5)
    assert interrupt_exit_code(info.value) == code
    assert signal.getsignal(sig) is before and not interrupts._RECEIVED  # restored, forgotten


def test_a_swallowed_ctrl_c_still_stops_a_bulk_write(tmp_path: Path) -> None:
    uri = tmp_path / "c"
    with pytest.raises(Interrupted), stop_signals():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except KeyboardInterrupt:  # what a library that clears the error does
            pass
        VolumeCollection.from_images(str(uri), _images(4))  # must not run to its end
    assert not uri.exists()  # the failed constructor removed what it created
    coll = VolumeCollection.from_images(str(uri), _images(4))  # outside the handlers: nothing recorded
    assert len(coll) == 4
