"""The one exception type the CLI turns into a one-line message and exit code 2."""


class LLMCalcWarning(UserWarning):
    """A suspicious input or result (an MFU above any published run, a prompt beyond the model's context) or a note on
    how an input was read, as the CLI issues it through Python's warnings and prints it on stderr under its answer
    (filter it with ``warnings.simplefilter("ignore", LLMCalcWarning)``). The engine's functions raise none: a
    result's warnings are in its ``warnings`` list."""


class LLMCalcError(ValueError):
    """A problem with the user's input: names the field and says what would be valid.

    >>> str(LLMCalcError("--tp", "must divide the 32 attention heads; try 1, 2, 4, 8, 16 or 32"))
    '--tp: must divide the 32 attention heads; try 1, 2, 4, 8, 16 or 32'
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


def one_line(text: str) -> str:
    """``text`` as one printable line: line breaks and other control characters (from a file name,
    a model name, a YAML value) are shown escaped, so a message can never spill onto a second line
    or send terminal escapes.

    >>> one_line("no such file: a\\nb\\x1b[31m")
    'no such file: a\\\\nb\\\\x1b[31m'
    """
    import unicodedata

    out = []
    for ch in text:
        if ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)
