"""GSM8K, MATH-500 and AIME loaders: local JSONL in the hub formats, clear offline errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from testtime.tasks import TaskError, make_task


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_gsm8k_local_file_keeps_the_answer_after_hashes(tmp_path: Path) -> None:
    f = write(tmp_path / "g.jsonl", [
        {"question": "Tom has 3 apples and buys 4. How many?", "answer": "3+4=7\n#### 7"},
        {"question": "Big?", "answer": "so\n#### 1,200"}])
    probs = make_task(f"gsm8k:path={f}").problems()
    assert [p.reference for p in probs] == ["7", "1200"]


def test_math500_local_file_keeps_metadata_and_latex(tmp_path: Path) -> None:
    f = write(tmp_path / "m.jsonl", [
        {"problem": "Compute $\\frac{1}{2}+\\frac{1}{3}$.", "answer": "\\frac{5}{6}",
         "unique_id": "test/algebra/1.json", "level": 2, "subject": "Algebra"},
        {"problem": "", "answer": "1"}])
    task = make_task(f"math500:path={f}")
    (p,) = task.problems()
    assert p.reference == "\\frac{5}{6}" and p.metadata["level"] == 2
    assert len(task.report.skipped) == 1


def test_aime_local_file(tmp_path: Path) -> None:
    f = write(tmp_path / "a.jsonl", [{"id": 60, "problem": "Find N.", "answer": "204"}])
    (p,) = make_task(f"aime:path={f}").problems(limit=5)
    assert p.id == "60" and p.reference == "204"


@pytest.mark.parametrize("name, hub", [("gsm8k", "openai/gsm8k"),
                                       ("math500", "HuggingFaceH4/MATH-500"),
                                       ("aime", "HuggingFaceH4/aime_2024")])
def test_hub_loader_without_network_is_a_clear_error(name: str, hub: str) -> None:
    task = make_task(name)
    assert hub in task.name
    with pytest.raises(TaskError, match=r"Hugging Face hub|datasets") as info:
        task.problems(limit=1)
    assert "path=FILE.jsonl" in str(info.value)


def test_missing_local_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TaskError, match="does not exist"):
        make_task(f"gsm8k:path={tmp_path / 'none.jsonl'}").problems()
