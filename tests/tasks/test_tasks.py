"""Built-in arith task and the JSONL loader (formats, field mapping, broken lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testtime.answers import is_correct
from testtime.tasks import TaskError, make_task


def test_arith_is_reproducible_and_graded_exactly() -> None:
    a = make_task("arith").problems(limit=20, seed=3)
    b = make_task("arith").problems(limit=20, seed=3)
    assert a == b
    assert a != make_task("arith").problems(limit=20, seed=4)
    assert {p.metadata["level"] for p in a} == {2, 3, 4, 5}
    for p in a:
        assert p.reference == str(eval(p.metadata["expression"]))
        assert "The answer is" in (p.instruction or "")


def test_arith_levels() -> None:
    assert {p.metadata["level"] for p in make_task("arith:level=1").problems(5)} == {1}
    assert {p.metadata["level"] for p in make_task("arith:level=1+5").problems(6)} == {1, 5}
    with pytest.raises(TaskError, match="level"):
        make_task("arith:level=9")
    with pytest.raises(TaskError, match="invalid task spec"):
        make_task("arith:colour=red")


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_gsm8k_format(tmp_path: Path) -> None:
    f = write(tmp_path / "gsm.jsonl", [
        json.dumps({"question": "Tom has 3 apples and buys 4. How many?",
                    "answer": "3 + 4 = 7\n#### 7"}),
        json.dumps({"question": "Big?", "answer": "#### 1,000"}),
    ])
    problems = make_task(str(f)).problems()
    assert [p.reference for p in problems] == ["7", "1000"]
    assert is_correct("1,000", problems[1].reference)


def test_math_format_and_field_mapping(tmp_path: Path) -> None:
    f = write(tmp_path / "m.jsonl", [
        json.dumps({"problem": "Simplify 2/4.", "answer": "\\frac{1}{2}", "level": "Level 2"}),
    ])
    (p,) = make_task(f"jsonl:path={f},format=math").problems()
    assert p.reference == "\\frac{1}{2}" and p.metadata["level"] == "Level 2"
    g = write(tmp_path / "custom.jsonl", [json.dumps({"q": "1+1?", "a": "2"})])
    (c,) = make_task(f"jsonl:path={g},question=q,answer=a").problems()
    assert (c.question, c.reference) == ("1+1?", "2")


def test_broken_lines_are_reported_by_number_and_others_still_load(tmp_path: Path) -> None:
    f = write(tmp_path / "bad.jsonl", [
        json.dumps({"question": "ok 1?", "answer": "#### 1"}),
        "{not json",
        json.dumps({"answer": "#### 3"}),
        "[1, 2]",
        json.dumps({"question": "ok 5?", "answer": "#### 5"}),
    ])
    task = make_task(str(f))
    problems = task.problems()
    assert [p.reference for p in problems] == ["1", "5"]
    assert [s.split(":")[1] for s in task.report.skipped] == ["2", "3", "4"]
    assert "question" in task.report.skipped[1]


def test_missing_or_useless_files(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="does not exist"):
        make_task(str(tmp_path / "nope.jsonl"))
    f = write(tmp_path / "all_bad.jsonl", ["garbage", "more garbage"])
    with pytest.raises(TaskError, match="no valid problems"):
        make_task(str(f)).problems()


def test_gsm8k_train_is_shipped_in_a_seeded_order() -> None:
    task = make_task("gsm8k-train")
    first = task.problems(limit=120, seed=0)
    assert len(first) == 120 and len({p.id for p in first}) == 120
    assert task.problems(limit=40, seed=0) == first[:40]
    assert [p.id for p in task.problems(limit=40, seed=1)] != [p.id for p in first[:40]]
    (natalia,) = [p for p in task.problems(seed=0) if p.id == "train-1"]
    assert natalia.reference == "72" and natalia.question.startswith("Natalia sold clips")
    assert len(task.problems(seed=0)) == 7473
