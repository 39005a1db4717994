"""The llmcalc command line: the root app, its global options and the error boundary.

Commands live in one module per group (catalog, model, memory, training, serving, report, bench) and
take their options from calc.cli.options; engine modules are imported inside each command so
`llmcalc --help` stays fast.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from functools import cache
from importlib import import_module
from typing import Annotated, Any

# No pydantic plugin (an observability hook found by scanning every installed package's entry points)
# has a use in a one-shot sizing command; skipping the scan saves its time at the first spec built.
# An explicit PYDANTIC_DISABLE_PLUGINS in the environment still wins.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer

from calc.cli.shell import SHORT_HELP, WHERE, Group, command_settings
from calc.errors import LLMCalcError

# A run imports and builds only the command it names (typer reads every registered function's signature before
# parsing anything); the root's --help, and anything else, gets every command. Where each lives: shell.WHERE.


def build_app(names: Iterable[str] = SHORT_HELP) -> typer.Typer:
    """The llmcalc app with the commands ``names`` (default: all), in the order of `llmcalc --help`."""
    wanted = set(names)
    app = typer.Typer(
        name="llmcalc",
        help="Exact, explained sizing arithmetic for LLMs: parameters, FLOPs, memory (inference, training, "
        "fine-tuning), MFU, training step time and plans, serving capacity and latency, calibration.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=True,
        rich_markup_mode=None,
        cls=Group,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    for name in SHORT_HELP:
        if name in wanted:
            module, function = WHERE[name]
            app.command(name, **command_settings(name))(getattr(import_module(f"calc.cli.{module}"), function))
    app.callback()(_root)
    return app


@cache
def _app_for(command: str | None) -> typer.Typer:
    """The app that runs ``command`` (only it), or the whole app for None."""
    return build_app([command] if command else SHORT_HELP)


def __getattr__(name: str) -> Any:
    """``calc.cli.app.app``: the whole app, built on first use."""
    if name == "app":
        return _app_for(None)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _command_named(args: list[str]) -> str | None:
    """The command a command line runs when its first argument names one (--debug already taken out).
    None for anything else (a root option such as --help before it, a typo, shell completion): then
    the whole app answers, as the root's options and errors need every command."""
    if args and args[0] in SHORT_HELP and not any(k.startswith("_LLMCALC_COMPLETE") for k in os.environ):
        return args[0]
    return None


# Typer wraps an option parser's ValueError as "Invalid value for '--x': Value error, --x: ..."; our
# messages already name the flag, so the wrapper is dropped.
_VALUE_ERROR = re.compile(r"^Invalid value for '(-[^']*)'(?: / '[^']*')*: (?:Value error, )?(.*)$", re.S)


# Click's own usage errors, each put as "--x: what to do" (the house form: the flag first, then the fix).
_CLICK_FORMS = (
    (re.compile(r"^No such option: (\S+) \(Possible options: (.*)\)$"), "{0}: no such option; did you mean {1}? (--help lists them)"),
    (re.compile(r"^No such option: (\S+)$"), "{0}: no such option for this command (--help lists them)"),
    (re.compile(r"^Missing option '([^']+)'.*$"), "{0}: missing; this command needs it (--help says what it takes)"),
    (re.compile(r"^Option '([^']+)' requires an argument\.$"), "{0}: needs a value after it"),
)


def _flag_first(message: str) -> str:
    """Click's "Invalid value for '--x' / '-x': Value error, ..." as our "--x: ..." (once); its "No such option",
    "Missing option" and "requires an argument" errors in the same form (_CLICK_FORMS)."""
    match = _VALUE_ERROR.match(message)
    if not match:
        for pattern, form in _CLICK_FORMS:
            found = pattern.match(message)
            if found:
                return form.format(*found.groups())
        return message
    flag, rest = match.groups()
    return rest if rest.startswith(f"{flag}:") else f"{flag}: {rest}"


def _version(value: bool) -> None:
    if value:
        from calc import __version__

        sys.stdout.write(f"llmcalc {__version__}\n")
        raise typer.Exit(0)


def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors (also after the command name)")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")] = False,
) -> None:
    del debug  # main() takes --debug out of the arguments wherever it is typed; declared here for --help


REPORT_AT = "the llmcalc issue tracker"  # no public address is published yet


def _fail(message: str) -> None:
    """A user error: one line on stderr, exit 2."""
    from calc.errors import one_line

    sys.stderr.write(f"llmcalc: error: {one_line(message)}\n")
    sys.exit(2)


def _internal(exc: BaseException) -> None:
    """A bug (an exception no check of ours raised): one line asking for a report, exit 1."""
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    sys.stderr.write(f"llmcalc: internal error: {text} — please report this at {REPORT_AT} "
                     "(rerun with --debug for the traceback)\n")
    sys.exit(1)


def _split_debug(args: list[str]) -> tuple[list[str], bool]:
    """``--debug`` wherever it is typed before a ``--`` (before or after the command name), and the rest."""
    end = args.index("--") if "--" in args else len(args)
    debug = "--debug" in args[:end]
    return [a for i, a in enumerate(args) if i >= end or a != "--debug"], debug


def _plain_text(param: Any) -> bool:
    """A string option without a parser of its own (typer >= 0.2x keeps the annotation in a type descriptor; older
    typer / click name the type "text")."""
    described = getattr(param, "type_descriptor", None)
    if described is not None:
        info = described.parameter_info
        return described.annotation in (str, str | None) and getattr(info, "parser", None) is None \
            and getattr(info, "click_type", None) is None
    return getattr(getattr(param, "type", None), "name", "") == "text"


def _empty_value(app: Any, args: list[str]) -> tuple[str, bool] | None:
    """The option given an empty value (``--system ''`` or ``--system=``), which a string option would otherwise read
    as "not given" and drop in silence; None when there is none. Introspects the command's options only when an empty
    argument is present (no cost otherwise)."""
    if "" not in args and not any(a.startswith("--") and a.endswith("=") for a in args):
        return None
    command = typer.main.get_command(app)  # a click group or command (typer vendors click: duck-typed here)
    subcommands = getattr(command, "commands", {})
    if args and args[0] in subcommands:
        command = subcommands[args[0]]
    # plain string options only: one with its own parser (a dtype, a count) or a choice refuses "" in its own words
    takes_value = {name: bool(getattr(p, "required", False)) for p in command.params
                   if getattr(p, "param_type_name", "") == "option" and not getattr(p, "is_flag", False)
                   and not getattr(p, "count", False) and _plain_text(p) for name in p.opts}
    for i, a in enumerate(args):
        flag, sep, value = a.partition("=")
        if sep and not value and flag in takes_value:
            return flag, takes_value[flag]
        if a == "" and i > 0 and args[i - 1] in takes_value:
            return args[i - 1], takes_value[args[i - 1]]
    return None


def main() -> None:
    """Console entry point: a user error is one line on stderr and exit code 2; a bug is one
    "internal error" line and exit code 1 (with --debug, the traceback)."""
    try:  # typer >= 0.2x vendors click; older typer uses click itself
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import ClickException  # type: ignore[no-redef]
        from click.exceptions import NoArgsIsHelpError  # type: ignore[no-redef]
    from calc.sanity import hold_warnings, release_warnings

    args, debug = _split_debug(sys.argv[1:])
    hold_warnings()  # a refusal stays one line: warnings print after an answer only
    try:
        empty = _empty_value(_app_for(_command_named(args)), args)
        if empty is not None:
            flag, required = empty
            _fail(f"{flag}: an empty value; give one" + ("" if required else f", or drop {flag} for its default"))
        try:
            code = _app_for(_command_named(args))(args=args, standalone_mode=False)
        except NoArgsIsHelpError as exc:
            sys.stdout.write(exc.ctx.get_help() + "\n")
            sys.exit(0)
        except typer.Exit as exc:
            release_warnings(show=not exc.exit_code)
            sys.exit(exc.exit_code)
        except typer.Abort:
            _fail("aborted")
        except LLMCalcError as exc:
            if debug:
                raise
            _fail(str(exc))
        except ClickException as exc:
            if debug:
                raise
            _fail(_flag_first(exc.format_message().replace("\n", " ")))
        except OSError as exc:  # writing --plot/--save, a closed pipe
            if debug:
                raise
            _fail(f"cannot write output: {exc.strerror or exc}".replace("\n", " "))
        except Exception as exc:  # noqa: BLE001 - every other exception is a bug: one line, never a traceback
            if debug:
                raise
            _internal(exc)
        release_warnings(show=True)  # warnings, then what a suffixed number was read as, under the answer
        sys.exit(code if isinstance(code, int) else 0)
    finally:
        release_warnings(show=False)  # whatever is still held belongs to a refusal


if __name__ == "__main__":
    main()
