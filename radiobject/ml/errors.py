"""Typed errors of the loaders, and how they cross from a worker process to the training process.

* :class:`SampleError` — loading, transforming or collating a sample failed; names the subject and
  the store. When the cause is itself a radiobject error (``CorruptDataError``,
  ``RemoteStorageError``, ``StoreNotFoundError``, ...) the error raised is an instance of *both*
  ``SampleError`` and the cause's class (:func:`sample_error`), with the cause's fields, so
  ``except RemoteStorageError`` catches a store that stopped answering mid-epoch.
* :class:`LoaderConfigError` (a ``ValueError``) / :class:`LoaderArgumentError` (also a
  ``TypeError``) — a loader argument is invalid; raised before any worker starts.
* :class:`ResumeStateError` — a ``state_dict`` does not belong to this loader or was tampered with.
* :class:`WorkerError` / :class:`WorkerTimeoutError` — a worker process died (killed, out of
  memory) or did not deliver a batch within ``timeout``.

**Across processes.** torch re-raises a worker's exception by calling its class with one message
(``exc_type(msg)``), which fails for errors built from several fields and then becomes a bare
``RuntimeError``. Inside a worker the datasets and collate functions of ``ml`` therefore *return*
a :class:`WorkerFailure` holding the error itself; ``RadiDataLoader`` raises it in the training
process with its type and fields intact.
"""

from __future__ import annotations

import pickle
from typing import Any, cast

from radiobject.errors import RadiObjectError

__all__ = [
    "EmptySelectionError",
    "LabelValueError",
    "LoaderArgumentError",
    "LoaderConfigError",
    "ResumeStateError",
    "SampleError",
    "WorkerError",
    "WorkerFailure",
    "WorkerTimeoutError",
    "first_key",
    "sample_error",
]


class SampleError(RadiObjectError):
    """Loading or transforming one sample failed; the message names the subject and the store.

    Attributes:
        subject: the subject ID (``"?"`` when unknown).
        store: the store URI.
    """

    #: The radiobject error class this one also is (``None``: a plain ``SampleError``).
    cause_type: type[RadiObjectError] | None = None

    def __init__(self, message: str, *, subject: str = "", store: str = "") -> None:
        BaseException.__init__(self, message)  # not the cause class's __init__ (other fields)
        self.subject, self.store = subject, store

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {k: v for k, v in self.__dict__.items() if k not in ("subject", "store")}
        return (_rebuild, (self.cause_type, str(self), self.subject, self.store, fields))


_COMBINED: dict[type, type[SampleError]] = {}


def _combined(cause: type[RadiObjectError]) -> type[SampleError]:
    cls = _COMBINED.get(cause)
    if cls is None:
        name = f"Sample{cause.__name__}"
        cls = type(name, (SampleError, cause), {"__module__": __name__, "__qualname__": name, "cause_type": cause})
        _COMBINED[cause] = cls
    return cls


def _new(cls: type[SampleError], message: str) -> SampleError:
    """An instance of ``cls`` made without running any ``__init__``, ``args`` set to ``(message,)``.

    ``cls.__new__(cls, message)`` first; when that raises ``TypeError`` (a cause whose ``__new__``
    takes other arguments, or a builtin base whose ``__new__`` CPython calls unsafe for a combined
    class: ``MemoryError``'s), the ``__new__`` of each builtin base in the MRO, most derived first
    (``OSError.__new__`` for an ``OSError``'s layout, else ``BaseException.__new__``)."""
    try:
        exc = cls.__new__(cls, message)
    except TypeError as first:
        for base in cls.__mro__:
            if base.__module__ != "builtins" or "__new__" not in vars(base) or base is object:
                continue
            try:
                exc = cast(Any, base).__new__(cls, message)  # a builtin exception's __new__
                break
            except TypeError:
                continue
        else:
            raise first
    exc.args = (message,)
    return exc


def _rebuild(
    cause: type[RadiObjectError] | None, message: str, subject: str, store: str, fields: dict[str, Any]
) -> SampleError:
    cls = _combined(cause) if cause is not None else SampleError
    exc = _new(cls, message)
    SampleError.__init__(exc, message, subject=subject, store=store)
    exc.__dict__.update(fields)
    exc.subject, exc.store = subject, store
    return exc


def sample_error(message: str, cause: BaseException | None, *, subject: str = "", store: str = "") -> SampleError:
    """A ``SampleError`` with ``message``; also an instance of ``type(cause)`` when that is a radiobject error."""
    if isinstance(cause, SampleError):
        return cause
    if isinstance(cause, RadiObjectError):
        try:
            fields = {k: v for k, v in vars(cause).items() if k not in ("subject", "store")}
            return _rebuild(type(cause), message, subject, store, fields)
        except TypeError:  # a class that cannot be combined (layout): a plain SampleError
            pass
    return SampleError(message, subject=subject, store=store)


class LoaderConfigError(RadiObjectError, ValueError):
    """A loader argument is invalid (names the factory and the argument)."""


class EmptySelectionError(LoaderConfigError):
    """A loader's subjects / split / fold / view select no subject at all."""


class LoaderArgumentError(LoaderConfigError, TypeError):
    """A loader argument has the wrong type or is unknown."""


class LabelValueError(RadiObjectError, ValueError):
    """A label volume holds values that are not labels (non-integer or non-finite floats)."""


class ResumeStateError(RadiObjectError, ValueError):
    """A resume state (``state_dict``) does not belong to this loader or is malformed."""


class WorkerError(RadiObjectError, RuntimeError):
    """A DataLoader worker process died (killed, out of memory) or failed outside a sample."""


class WorkerTimeoutError(WorkerError, TimeoutError):
    """No batch arrived from the workers within the loader's ``timeout``."""


class WorkerFailure:
    """An error raised inside a worker process, returned as the batch (see the module doc)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        try:
            pickle.dumps(error)
        except Exception as exc:  # noqa: BLE001 - an unpicklable error must still reach the trainer
            error = SampleError(f"{error} (the original error could not be sent from the worker: {exc})")
        self.error = error

    def __reduce__(self) -> tuple[Any, ...]:
        return (WorkerFailure, (self.error,))


def first_key(keys: Any, epoch: int) -> tuple[int, int]:
    """``(index, epoch)`` of the first of a batch's sample keys (ints or ``(epoch, index)`` pairs), for naming."""
    try:
        key = keys[0]
        return (int(key[1]), int(key[0])) if isinstance(key, tuple) else (int(key), int(epoch))
    except Exception:  # noqa: BLE001 - naming is best effort
        return -1, int(epoch)


def _subclasses(cls: type) -> list[type]:
    out: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def __getattr__(name: str) -> Any:
    """``Sample<Cause>`` classes by name (pickle finds a combined class where torch sends its type)."""
    if name.startswith("Sample") and name != "SampleError":
        for cls in _subclasses(RadiObjectError):
            if cls.__name__ == name[len("Sample") :] and not issubclass(cls, SampleError):
                return _combined(cls)  # type: ignore[arg-type]  # a RadiObjectError subclass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
