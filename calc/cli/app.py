"""The llmcalc command line: the root app, its global options and the error boundary.

Commands live in one module per group (catalog, model, memory, training, serving, report, bench) and
take their options from calc.cli.options; engine modules are imported inside each command so
`llmcalc --help` stays fast.
"""

from __future__ import annotations

import re
import sys
from typing import Annotated

import typer

from calc.cli import bench, catalog, memory, model, report, serving, training
from calc.errors import LLMCalcError

app = typer.Typer(
    name="llmcalc",
    help="Exact, explained sizing arithmetic for LLMs: parameters, FLOPs, memory (inference, training, fine-tuning), "
    "MFU, training step time and plans, serving capacity and latency, calibration.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)

_state = {"debug": False}
# Typer wraps an option parser's ValueError as "Invalid value for '--x': Value error, --x: ..."; our
# messages already name the flag, so the wrapper is dropped.
_VALUE_ERROR = re.compile(r"^Invalid value for '(-[^']*)'(?: / '[^']*')*: (?:Value error, )?(.*)$", re.S)


def _flag_first(message: str) -> str:
    """Click's "Invalid value for '--x' / '-x': Value error, ..." as our "--x: ..." (once)."""
    match = _VALUE_ERROR.match(message)
    if not match:
        return message
    flag, rest = match.groups()
    return rest if rest.startswith(f"{flag}:") else f"{flag}: {rest}"

for _command in (catalog.models, catalog.gpus, catalog.show, model.params, model.flops, memory.memory,
                 training.mfu, serving.latency, serving.concurrency, report.report, report.compare, bench.bench,
                 serving.serve):
    app.command()(_command)
app.command("train-time")(training.train_time)
app.command("train-step")(training.train_step)
app.command("train-plan")(training.train_plan)
app.command("systems")(catalog.systems)
app.command()(bench.validate)
app.command()(bench.calibrate)
app.command("import")(catalog.import_config)


def _version(value: bool) -> None:
    if value:
        from calc import __version__

        sys.stdout.write(f"llmcalc {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="show tracebacks on errors")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")] = False,
) -> None:
    _state["debug"] = debug


def _fail(message: str) -> None:
    from calc.errors import one_line

    sys.stderr.write(f"llmcalc: error: {one_line(message)}\n")
    sys.exit(2)


def main() -> None:
    """Console entry point: every user error is one line on stderr and exit code 2."""
    try:  # typer >= 0.2x vendors click; older typer uses click itself
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
    except ImportError:  # pragma: no cover - depends on the installed typer
        from click import ClickException  # type: ignore[no-redef]
        from click.exceptions import NoArgsIsHelpError  # type: ignore[no-redef]

    args = sys.argv[1:]
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:
        sys.stdout.write(exc.ctx.get_help() + "\n")
        sys.exit(0)
    except LLMCalcError as exc:
        if _state["debug"]:
            raise
        _fail(str(exc))
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        _fail("aborted")
    except ClickException as exc:
        if _state["debug"]:
            raise
        _fail(_flag_first(exc.format_message().replace("\n", " ")))
    except (ValueError, OverflowError, ArithmeticError, RecursionError) as exc:
        if _state["debug"]:
            raise
        _fail(f"{type(exc).__name__}: {exc}".replace("\n", " "))
    except OSError as exc:  # writing --plot/--save, a closed pipe
        if _state["debug"]:
            raise
        _fail(f"cannot write output: {exc.strerror or exc}".replace("\n", " "))
    except Exception as exc:  # noqa: BLE001 - last resort: one line, never a traceback
        if _state["debug"] or "--debug" in args:
            raise
        _fail(f"internal error ({type(exc).__name__}: {exc}); please report it with --debug output".replace("\n", " "))
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
