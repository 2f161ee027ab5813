"""Run a model-written program in the sandbox and read what it printed (programs as thoughts).

The program runs in the same box, with the same limits and honest statuses, as code
verification (:mod:`testtime.code.sandbox`): it is loaded by a small runner in the box that
executes it with its ``stdout`` captured (at most ``output_chars`` kept) and returns, over
the plain-data channel, what it printed, the value of its ``answer`` variable (as text) and
the traceback it raised, if any. A program that loops (the wall or CPU limit), floods its
output (past the cap), exhausts memory or kills its own process gives a
:class:`ProgramRun` with ``ok`` False and a status saying why; it never raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from testtime.code.sandbox import Limits, Mode, run_calls

OUTPUT_CHARS = 4000
_RUNNER = '''
def testtime_program_run(source, cap):
    import contextlib
    import linecache
    import traceback

    class Captured:
        def __init__(self):
            self.parts, self.size = [], 0

        def write(self, text):
            text = str(text)
            room = cap - self.size
            if room > 0:
                self.parts.append(text[:room])
            self.size += len(text)
            return len(text)

        def flush(self):
            pass

    out = Captured()
    linecache.cache["<program>"] = (len(source), None, source.splitlines(True), "<program>")
    namespace = {"__name__": "__main__"}
    error = None
    with contextlib.redirect_stdout(out):
        try:
            exec(compile(source, "<program>", "exec"), namespace)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                error = "SystemExit: " + str(exc.code)
        except BaseException as exc:
            lines = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)
            error = "".join(lines)[-3000:]
    answer = namespace.get("answer")
    shown = None
    if answer is not None and not callable(answer):
        try:
            shown = str(answer)[:200]
        except BaseException:
            shown = None
    return {"stdout": "".join(out.parts), "flooded": out.size > cap, "error": error,
            "answer": shown}
'''


@dataclass(frozen=True)
class ProgramRun:
    """What running one program gave.

    ``ok``: it ran to its end without raising (``status`` is the box's: ``exited``,
    ``timeout``, ``cpu limit``, ``memory limit``, ``killed (SIGKILL)``, ...). ``stdout`` is
    what it printed (cut at the cap; ``flooded`` says so), ``variable`` the text of its
    ``answer`` variable, ``error`` the traceback's last lines or why the box ended.
    """

    ok: bool
    stdout: str
    variable: str | None
    error: str | None
    status: str
    seconds: float
    cpu_seconds: float
    flooded: bool = False

    @property
    def result(self) -> str | None:
        """The program's result: its last printed line, else its ``answer`` variable; None
        when it failed or gave neither."""
        if not self.ok:
            return None
        lines = [line.strip() for line in self.stdout.splitlines() if line.strip()]
        if lines:
            return lines[-1]
        return (self.variable.strip() or None) if self.variable is not None else None

    def feedback(self, chars: int = 1500) -> str:
        """What running it showed, for the model: the output's tail and the error, if any."""
        shown = self.stdout[-chars:]
        if self.error:
            shown = f"{shown}\n{self.error[-chars:]}" if shown.strip() else self.error[-chars:]
        return shown.strip() or "(the program printed nothing)"


def run_program(source: str, limits: Limits | None = None, mode: Mode = "auto",
                output_chars: int = OUTPUT_CHARS) -> ProgramRun:
    """Run ``source`` as a program in the sandbox; what it printed and how it ended."""
    run = run_calls(_RUNNER, [("testtime_program_run", [source, output_chars], {})],
                    limits, mode)
    value = run.values[0] if run.values else None
    if not run.passed or not run.passed[0] or not isinstance(value, dict):
        why = f"the program did not finish ({run.status})"
        if run.errors.get(0):
            why = f"{why}: {run.errors[0]}"
        return ProgramRun(ok=False, stdout="", variable=None, error=why, status=run.status,
                          seconds=run.seconds, cpu_seconds=run.cpu_seconds)
    error = value.get("error")
    flooded = value.get("flooded") is True
    if flooded and error is None:
        error = f"the program printed more than {output_chars} characters"
    variable = value.get("answer")
    return ProgramRun(ok=error is None, stdout=str(value.get("stdout", "")),
                      variable=variable if isinstance(variable, str) else None,
                      error=str(error) if error is not None else None, status=run.status,
                      seconds=run.seconds, cpu_seconds=run.cpu_seconds,
                      flooded=flooded)
