"""Errors a user can fix: the CLI prints them as one line and exits non-zero (no traceback)."""

from pydantic import ValidationError


class UserError(Exception):
    """Bad input or bad configuration: the message names what is wrong and where."""


def validated(model, data, where: str):
    """`model.model_validate(data)`, a pydantic error becoming a `UserError` on one line that
    starts with `where`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{where}: {describe(exc)}") from exc


def describe(exc: ValidationError) -> str:
    """A pydantic error as one line: `where: what (got value)` per problem."""
    parts = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"])) or "config"
        got = "" if error["type"] == "missing" else f" (got {error['input']!r})"
        parts.append(f"{where}: {error['msg']}{got}")
    return "; ".join(parts)
