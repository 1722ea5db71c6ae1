"""The subject table a user hands in (``obs_meta``): its ID column, validated."""

from __future__ import annotations

import numpy as np
import pandas as pd

from radiobject.errors import AlignmentError
from radiobject.model.ids import validate_id

SUBJECT = "obs_subject_id"


#: Accepted names of the subject column of a user's table (BIDS: ``participant_id``).
SUBJECT_ALIASES: tuple[str, ...] = (SUBJECT, "subject_id", "participant_id")


def subject_table(obs_meta: pd.DataFrame) -> pd.DataFrame:
    """A copy of a user's subject table keyed by ``obs_subject_id`` (renamed from ``subject_id`` /
    ``participant_id`` when that is what it has), IDs validated, no duplicates."""
    col = next((c for c in SUBJECT_ALIASES if c in obs_meta.columns), None)
    if col is None:
        raise ValueError(f"obs_meta needs one of the columns {SUBJECT_ALIASES} (got {list(obs_meta.columns)})")
    df = obs_meta.rename(columns={col: SUBJECT}) if col != SUBJECT else obs_meta.copy()
    df[SUBJECT] = [validate_id(str(s) if isinstance(s, (int, np.integer)) else s, "subject id") for s in df[SUBJECT]]
    if df[SUBJECT].duplicated().any():
        dup = df.loc[df[SUBJECT].duplicated(), SUBJECT].iloc[0]
        raise AlignmentError(str(dup), "appears twice in obs_meta")
    return df
