"""Step segmentation and aggregation shared by process verifiers and tree search."""

from __future__ import annotations

import math

import pytest

from testtime.verifiers.steps import StepError, aggregate, split_steps

TEXT = "First, read.\n\nStep 1: add 2 and 3.\nSo 5.\n\n\nStep 2: done.\n"


def test_blank_lines_split_paragraphs() -> None:
    assert split_steps(TEXT, "blank") == ["First, read.", "Step 1: add 2 and 3.\nSo 5.",
                                          "Step 2: done."]


def test_step_headers_keep_preamble_and_multiline_steps() -> None:
    assert split_steps(TEXT, "step") == ["First, read.", "Step 1: add 2 and 3.\nSo 5.",
                                         "Step 2: done."]
    assert split_steps("step 1. a\n**Step 2:** b", "step") == ["step 1. a", "**Step 2:** b"]


def test_lines_and_custom_delimiter() -> None:
    assert split_steps("a\n\n b \nc", "line") == ["a", "b", "c"]
    assert split_steps("x ки y ки", " ки") == ["x", "y"]


def test_partial_solution_is_a_prefix_of_the_full_steps() -> None:
    full = split_steps(TEXT, "step")
    partial = split_steps(TEXT[: TEXT.index("Step 2")], "step")
    assert partial == full[:2]


def test_no_steps_in_empty_text() -> None:
    assert split_steps("  \n\n ", "blank") == []
    with pytest.raises(StepError):
        split_steps("x", "")


@pytest.mark.parametrize(("how", "expected"), [
    ("min", 0.2), ("last", 0.9), ("product", 0.5 * 0.2 * 0.9), ("mean", 1.6 / 3)])
def test_aggregations(how: str, expected: float) -> None:
    assert math.isclose(aggregate([0.5, 0.2, 0.9], how), expected)


def test_bad_aggregation_and_empty_scores_are_clear_errors() -> None:
    with pytest.raises(StepError, match="unknown aggregation 'max'"):
        aggregate([0.1], "max")
    with pytest.raises(StepError, match="no step scores"):
        aggregate([], "min")
