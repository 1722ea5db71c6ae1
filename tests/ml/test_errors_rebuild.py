"""A worker's typed error re-created in the training process (``ml.errors._rebuild``): the type, the
message and the fields survive for causes whose ``__new__`` / ``__init__`` do not take one message
(``MemoryError``-derived, keyword-only arguments, ``OSError`` layouts)."""

from __future__ import annotations

import multiprocessing
import pickle

import pytest

from radiobject.errors import OutputTooLargeError, RadiObjectError, RemoteStorageError, StoreNotFoundError
from radiobject.ml.errors import SampleError, WorkerFailure, _rebuild, sample_error


class OutOfBudget(RadiObjectError, MemoryError):
    """A radiobject error that is also a ``MemoryError`` (no fields)."""


class NeedsCode(RadiObjectError):
    """An error whose ``__new__`` and ``__init__`` require a keyword-only argument."""

    def __new__(cls, *args: object, code: int) -> NeedsCode:
        return super().__new__(cls, *args)

    def __init__(self, text: str, *, code: int) -> None:
        super().__init__(text)
        self.code = code


class NeedsCodeOSError(RadiObjectError, OSError):
    """An ``OSError`` layout whose ``__new__`` requires a keyword-only argument."""

    def __new__(cls, *args: object, code: int) -> NeedsCodeOSError:
        return super().__new__(cls, *args)

    def __init__(self, text: str, *, code: int) -> None:
        super().__init__(text)
        self.code = code


def _roundtrip(exc: BaseException) -> BaseException:
    """As the error travels from a worker: pickled inside a ``WorkerFailure``, unpickled."""
    return pickle.loads(pickle.dumps(WorkerFailure(exc))).error


CAUSES = [
    pytest.param(OutputTooLargeError("s3://b/store", "volume needs 40 GiB"), (MemoryError,), id="OutputTooLargeError"),
    pytest.param(OutOfBudget("over budget"), (MemoryError,), id="MemoryError-derived"),
    pytest.param(NeedsCode("coded", code=7), (), id="keyword-only"),
    pytest.param(RemoteStorageError("s3://b/store", "timed out"), (OSError,), id="RemoteStorageError"),
    pytest.param(StoreNotFoundError("/tmp/none", "no array"), (FileNotFoundError, OSError), id="StoreNotFoundError"),
    pytest.param(NeedsCodeOSError("os coded", code=3), (OSError,), id="OSError-keyword-only"),
]


@pytest.mark.parametrize(("cause", "builtins"), CAUSES)
def test_sample_error_keeps_the_cause_type_across_processes(cause: RadiObjectError, builtins: tuple[type, ...]) -> None:
    err = sample_error("subject 'S1' failed: boom", cause, subject="S1", store="s3://b/store")
    back = _roundtrip(err)
    for exc in (err, back):
        assert isinstance(exc, SampleError)
        assert isinstance(exc, type(cause)), type(exc).__mro__
        for b in builtins:
            assert isinstance(exc, b)
        assert str(exc) == "subject 'S1' failed: boom"
        assert exc.args == ("subject 'S1' failed: boom",)
        assert (exc.subject, exc.store) == ("S1", "s3://b/store")
        for field, value in vars(cause).items():
            if field not in ("subject", "store"):
                assert getattr(exc, field) == value, field
    assert type(back) is type(err)


@pytest.mark.parametrize("cause", [OutputTooLargeError, OutOfBudget, NeedsCode, NeedsCodeOSError, RemoteStorageError])
def test_rebuild_directly(cause: type[RadiObjectError]) -> None:
    exc = _rebuild(cause, "the message", "S2", "/store", {"uri": "/store", "code": 1})
    assert isinstance(exc, cause) and isinstance(exc, SampleError)
    assert (str(exc), exc.args, exc.subject, exc.store) == ("the message", ("the message",), "S2", "/store")
    assert vars(exc)["uri"] == "/store" and vars(exc)["code"] == 1  # fields set by _rebuild


def _raise_in_child(queue: multiprocessing.Queue) -> None:
    err = sample_error("S3: volume too large", OutputTooLargeError("/s", "40 GiB"), subject="S3", store="/s")
    queue.put(WorkerFailure(err))


def test_a_worker_process_sends_a_memory_error_whole() -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_raise_in_child, args=(queue,))
    proc.start()
    try:
        failure = queue.get(timeout=60)
    finally:
        proc.join(timeout=60)
    err = failure.error
    assert isinstance(err, OutputTooLargeError) and isinstance(err, MemoryError) and isinstance(err, SampleError)
    assert (str(err), err.subject, err.uri, err.reason) == ("S3: volume too large", "S3", "/s", "40 GiB")
