"""Final-answer extraction, normalisation and equivalence for math-style problems.

Extraction looks, in order, for ``\\boxed{…}``, GSM8K's ``#### N``, "The answer is …" /
"Final answer: …", and finally the last number in the text. A text with none of these has no
answer (``None``); it is kept as a candidate and simply casts no vote.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache

_ANSWER_IS = re.compile(
    r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*(?:is)?\s*[:：]?|answer\s*[:：])"
    r"\s*[:：]?\s*",
    re.IGNORECASE,
)
_HASHES = re.compile(r"####\s*(.+)")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")
_LATEX_WRAPPERS = re.compile(r"^\\\(|\\\)$|^\\\[|\\\]$|^\$+|\$+$")
_TEXT_CMD = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``) with balanced braces."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i : j - 1] if depth == 0 else None


def _first_line_answer(raw: str) -> str:
    """Trim an "answer is …" capture to the answer itself."""
    line = raw.strip().splitlines()[0] if raw.strip() else ""
    boxed = _last_boxed(line)
    if boxed is not None:
        return boxed
    line = line.strip().strip("*").strip()
    if line.startswith("$") and line.count("$") >= 2:
        line = line[1 : line.index("$", 1)]
    line = re.split(r"\.(?:\s+|$)|;|\s+(?:because|since|so|which)\s", line)[0]
    number_then_words = re.match(r"^(\$?-?[\d,]*\.?\d+%?)\s+[A-Za-z]", line)
    if number_then_words:
        return number_then_words.group(1)
    return line.strip().rstrip(".").strip()


def extract_answer(text: str, *, marked_only: bool = False) -> str | None:
    """Pull the final answer out of a solution text, or None when it has none.

    ``marked_only`` accepts only an answer the text marks as such (boxed, ``####``, "the
    answer is"), not its last number: free text (a product description, a chat reply) has no
    final answer just because it mentions a number.
    """
    if not text:
        return None
    boxed = _last_boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    hashes = _HASHES.findall(text)
    if hashes:
        ans = _first_line_answer(hashes[-1])
        if ans:
            return ans
    for match in reversed(list(_ANSWER_IS.finditer(text))):
        ans = _first_line_answer(text[match.end():])
        if ans:
            return ans
    if marked_only:
        return None
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def normalize(answer: str) -> str:
    """A canonical string for an answer: numbers in one form, LaTeX noise and units removed."""
    s = answer.strip()
    s = _LATEX_WRAPPERS.sub("", s).strip()
    s = _TEXT_CMD.sub(r"\1", s)
    s = s.replace("\\!", "").replace("\\,", "").replace("\\ ", " ").replace("\\left", "")
    s = s.replace("\\right", "").replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.rstrip(".").strip()
    number = _as_number(s)
    if number is not None:
        return _format_number(number)
    return re.sub(r"\s+", " ", s)


def _as_number(s: str) -> Fraction | None:
    """Parse plain numbers, with thousands separators, currency, percent or simple fractions."""
    t = s.replace(",", "").replace("$", "").replace("\\%", "").replace("%", "").strip()
    t = re.sub(r"^(?:x|y|n|k|a|b)\s*=\s*", "", t)
    frac = re.fullmatch(r"\\frac\{(-?\d+)\}\{(-?\d+)\}", t)
    if frac:
        den = int(frac.group(2))
        return Fraction(int(frac.group(1)), den) if den else None
    slash = re.fullmatch(r"(-?\d+)\s*/\s*(\d+)", t)
    if slash:
        den = int(slash.group(2))
        return Fraction(int(slash.group(1)), den) if den else None
    t = re.sub(r"\s*(?:[a-zA-Z]+\.?)$", "", t) if re.match(r"^-?[\d.]+\s*[a-zA-Z]", t) else t
    try:
        return Fraction(Decimal(t))
    except (InvalidOperation, ValueError):
        return None


def _format_number(x: Fraction) -> str:
    if x.denominator == 1:
        return str(x.numerator)
    dec = Decimal(x.numerator) / Decimal(x.denominator)
    if Fraction(dec) == x:
        return format(dec.normalize(), "f")
    return f"{x.numerator}/{x.denominator}"


def equivalent(a: str | None, b: str | None) -> bool:
    """Whether two answers mean the same: canonical forms first, then math-verify."""
    if a is None or b is None:
        return False
    na, nb = normalize(a), normalize(b)
    if na == nb:
        return True
    if _as_number(na) is not None and _as_number(nb) is not None:
        return False
    return _math_verify_equal(na, nb)


@lru_cache(maxsize=65536)
def _math_verify_equal(a: str, b: str) -> bool:
    from math_verify import parse, verify  # heavy import, only for non-numeric answers

    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    try:
        pa = parse(f"${a}$", parsing_timeout=timeout)
        pb = parse(f"${b}$", parsing_timeout=timeout)
        if not pa or not pb:
            return False
        return bool(verify(pa, pb, timeout_seconds=timeout))
    except Exception:
        return False


_COMPUTATION = re.compile(r"\d\s*(?:[-+*×÷^]|\\times|\\cdot|\\div)\s*\(?\s*\d")


def undone(answer: str) -> bool:
    """Whether ``answer`` is a computation left undone (``486 * 13 - 546 * 6``), not a number."""
    a = normalize(answer)
    return _as_number(a) is None and _COMPUTATION.search(a) is not None


def is_correct(answer: str | None, reference: str | None) -> bool:
    """Grade an answer against a reference answer (which may itself be a full solution).

    A numeric reference needs a number: restating the question's arithmetic is no answer,
    even though it equals the reference symbolically."""
    if answer is None or reference is None:
        return False
    ref = extract_answer(reference) if ("####" in reference or "\\boxed" in reference) else None
    target = ref if ref is not None else reference
    if _as_number(normalize(target)) is not None and undone(answer):
        return False
    return equivalent(answer, target)


def group_answers(answers: list[str | None]) -> list[int | None]:
    """Map each answer to the index of its equivalence class (None for missing answers).

    Classes are formed greedily in order of first appearance, so the result is deterministic.
    """
    reps: list[str] = []
    keys: dict[str, int] = {}
    out: list[int | None] = []
    for ans in answers:
        if ans is None:
            out.append(None)
            continue
        key = normalize(ans)
        if key not in keys:
            match = next((i for i, r in enumerate(reps) if equivalent(r, key)), None)
            if match is None:
                reps.append(key)
                match = len(reps) - 1
            keys[key] = match
        out.append(keys[key])
    return out
