"""Argument checks of the loader factories (:mod:`radiobject.ml.loaders`): names, the disk cache's
place, an empty selection, and argument errors as typed radiobject errors naming the factory."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from radiobject.errors import DuplicateIdError, RadiObjectError
from radiobject.ml.cache import CacheStrategy
from radiobject.ml.errors import EmptySelectionError, LoaderArgumentError, LoaderConfigError

if TYPE_CHECKING:
    from radiobject.ml.config import CacheConfig
    from radiobject.ml.reader import VolumeReader

__all__ = ["check_cache_path", "names_of", "nonempty", "not_a_source", "typed"]

_F = TypeVar("_F", bound=Callable[..., Any])


def names_of(what: str, value: Any, uri: str) -> list[str]:
    """``value`` (one name or a sequence of names) as a list of str; ``DuplicateIdError`` for a name
    given twice (a channel twice, a subject trained on twice per epoch)."""
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) and not hasattr(names, "__iter__"):
        raise LoaderArgumentError(f"{what} must be a name or a list of names, got {type(value).__name__}")
    names = list(names)
    for n in names:
        if not isinstance(n, str):
            raise LoaderArgumentError(f"{what} must be names (str), got {n!r} ({type(n).__name__})")
    kind = "modality" if what == "modalities" else what.rstrip("s")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise DuplicateIdError(kind, n, f"{what} of a loader over {uri}")
        seen.add(n)
    return names


def check_cache_path(cfg: CacheConfig, uri: str) -> None:
    """A disk cache never lives inside a local store (the store holds only its own files)."""
    if cfg.strategy is not CacheStrategy.DISK or cfg.path is None or "://" in str(uri):
        return
    store, path = os.path.realpath(uri), os.path.realpath(os.fspath(cfg.path))
    if path == store or path.startswith(store.rstrip(os.sep) + os.sep):
        raise LoaderConfigError(f"cache_path {cfg.path} lies inside the store {uri}; put the cache outside it")


def nonempty(reader: VolumeReader, caller: str) -> VolumeReader:
    """``reader``, or ``EmptySelectionError`` when it selects no subject (a loop over it would train on nothing)."""
    if len(reader) == 0:
        raise EmptySelectionError(
            f"{caller}: no subjects to load from {reader.location.uri} (subjects=, split= / fold=, the view "
            "or incomplete='skip' selected none)"
        )
    return reader


def typed(fn: _F) -> _F:
    """Argument errors of a loader factory as typed radiobject errors naming the factory."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RadiObjectError:
            raise
        except TypeError as exc:
            raise LoaderArgumentError(f"{fn.__name__}: {exc}") from exc
        except ValueError as exc:
            raise LoaderConfigError(f"{fn.__name__}: {exc}") from exc

    return cast(_F, wrapper)


def not_a_source(radi: Any) -> LoaderArgumentError:
    """The error for a loader source that is not a store, a view of one, a reader or a path."""
    hint = " (a collection: RadiObject.from_volume_collections(uri, {name: it}) makes a store)"
    return LoaderArgumentError(
        f"the loaders take a RadiObject (or a view), a VolumeReader or a store path, not {type(radi).__name__}"
        + (hint if hasattr(radi, "obs_ids") else "")
    )
