"""The tables the data model hands out: pandas DataFrames that also answer ``.read()``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd


class CatalogFrame(pd.DataFrame):
    """A ``pandas.DataFrame`` (a copy: editing it changes nothing stored) with a ``read()`` method.

    ``radi.obs_meta`` is already the table; ``radi.obs_meta.read()`` (the spelling of the closest
    existing project) returns it too, optionally with only some ``columns``.
    """

    @property
    def _constructor(self) -> type[pd.DataFrame]:
        return pd.DataFrame  # results of pandas operations are plain DataFrames

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The table as a plain DataFrame (only ``columns`` when given)."""
        df = pd.DataFrame(self)
        return df if columns is None else df[list(columns)]
