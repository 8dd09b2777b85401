"""Output directories: never overwrite a user's data by accident."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.errors import UserError


def prepare_out(out: Path, overwrite: bool) -> None:
    """Create `out`; a non-empty `out` is an error unless `overwrite`, then it is replaced."""
    if out.exists() and (out.is_file() or any(out.iterdir())):
        if not overwrite:
            raise UserError(f"{out}: output path is not empty (pass --overwrite to replace it)")
        if out.is_file():
            out.unlink()
        else:
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
