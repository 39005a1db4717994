"""Option groups: a set of options several commands take together, declared once as a frozen dataclass whose fields
are the options (an ``Annotated[..., typer.Option(...)]`` type and a default, from calc.cli.options), and given to a
command as one parameter.

``@takes("launch", EngineLaunch)`` on a command whose signature has ``launch: EngineLaunch`` shows Typer the group's
options in that parameter's place and calls the command with them gathered into one ``EngineLaunch``; a Python
caller may pass the group's fields by name as well (missing ones take their defaults), so the command's options are
listed once, where the group is.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, get_type_hints

F = TypeVar("F", bound=Callable[..., Any])


def takes(param: str, group: type) -> Callable[[F], F]:
    """Replace the command's ``param`` by ``group``'s fields as options (module docstring)."""
    fields = dataclasses.fields(group)
    group_hints = get_type_hints(group, include_extras=True)

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        hints = get_type_hints(fn, include_extras=True)
        if param not in signature.parameters:
            raise TypeError(f"{fn.__name__} has no parameter {param!r} for {group.__name__}")
        params: list[inspect.Parameter] = []
        for p in signature.parameters.values():
            if p.name != param:
                params.append(p.replace(annotation=hints.get(p.name, p.annotation)))
                continue
            params += [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default,
                                         annotation=group_hints[f.name]) for f in fields]

        @functools.wraps(fn)
        def command(*args: Any, **kwargs: Any) -> Any:
            kwargs[param] = group(**{f.name: kwargs.pop(f.name, f.default) for f in fields})
            return fn(*args, **kwargs)

        del command.__wrapped__  # Typer reads the signature below, not fn's
        command.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params} | (
            {"return": hints["return"]} if "return" in hints else {})
        return command  # type: ignore[return-value]

    return decorate
