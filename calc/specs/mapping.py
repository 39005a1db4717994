"""Building a spec from a plain mapping (our YAML, a mapper's output): pydantic validation, with
an error turned into one line that names the file and the field."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from calc.errors import LLMCalcError, one_line

SpecT = TypeVar("SpecT", bound=BaseModel)


def spec_from_mapping(cls: type[SpecT], data: dict[str, Any], where: str, field: str) -> SpecT:
    """Validate a mapping into a spec; a pydantic error becomes one line naming the bad field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, where, field) from None


def validation_error(exc: ValidationError, where: str, field: str) -> LLMCalcError:
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err["loc"]) or "spec"
    message = err["msg"].removeprefix("Value error, ")
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return LLMCalcError(field, one_line(f"{where}: field '{loc}': {message}{more}"))
