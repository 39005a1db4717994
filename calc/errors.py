"""The one exception type the CLI turns into a one-line message and exit code 2."""


class LLMCalcError(ValueError):
    """A problem with the user's input: names the field and says what would be valid.

    >>> str(LLMCalcError("--tp", "must divide the 32 attention heads; try 1, 2, 4, 8, 16 or 32"))
    '--tp: must divide the 32 attention heads; try 1, 2, 4, 8, 16 or 32'
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")
