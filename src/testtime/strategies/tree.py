"""Search-tree nodes shared by every step-level strategy, and their JSON trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from testtime.types import Candidate, Prompt, Score


@dataclass(eq=False)
class Node:
    """One partial solution: the prompt that continues it, the step that made it, its value.

    ``prompt.prefix`` is the whole solution so far, byte for byte what the next expansion
    sends, so every child of a node shares its parent's prompt exactly (prefix-cache hits).
    """

    id: int
    parent: Node | None
    prompt: Prompt
    step: str = ""
    depth: int = 0
    candidate: Candidate | None = None
    step_scores: tuple[float, ...] = ()
    value: float = 0.0
    terminal: bool = False
    visits: int = 0
    total: float = 0.0
    children: list[Node] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)

    @property
    def text(self) -> str:
        """The solution text up to and including this node's step."""
        return self.candidate.text if self.candidate is not None else self.prompt.prefix

    @property
    def answer(self) -> str | None:
        """The answer extracted from this node's text, if any."""
        return self.candidate.answer if self.candidate is not None else None

    def path(self) -> list[Node]:
        """Nodes from the root's first child down to this one."""
        out: list[Node] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def first_step(self) -> Node:
        """The root's child this node descends from (itself at depth 1)."""
        path = self.path()
        return path[0] if path else self

    def scored_candidate(self) -> Candidate | None:
        """This node's candidate carrying the node's value and per-step scores."""
        if self.candidate is None:
            return None
        return self.candidate.with_score(Score(value=self.value, steps=self.step_scores))


class SearchTree:
    """Owns the nodes of one search, numbers them, and exports them as a JSON trace."""

    def __init__(self, root_prompt: Prompt) -> None:
        self.nodes: list[Node] = []
        self.root = self._new(None, root_prompt)

    def _new(self, parent: Node | None, prompt: Prompt, attach: bool = True,
             **kw: Any) -> Node:
        node = Node(id=len(self.nodes), parent=parent, prompt=prompt, **kw)
        self.nodes.append(node)
        if parent is not None and attach:
            parent.children.append(node)
        return node

    def child(self, parent: Node, candidate: Candidate, *, terminal: bool, sep: str,
              attach: bool = True) -> Node:
        """Add the node ``parent`` + the step in ``candidate`` (the sep ends a non-final step).

        ``attach=False`` records the node (e.g. a rollout) without making it a searchable child.
        """
        step = candidate.text[len(parent.prompt.prefix):]
        prompt = parent.prompt.extend(step if terminal else step + sep)
        return self._new(parent, prompt, attach, step=step, depth=parent.depth + 1,
                         candidate=candidate, terminal=terminal)

    def mark(self, nodes: list[Node], tag: str) -> None:
        """Tag nodes (e.g. ``kept``, ``selected``, ``pruned``) for the trace."""
        for node in nodes:
            node.tags.add(tag)

    def export(self) -> list[dict[str, Any]]:
        """The tree as JSON-ready dicts: id, parent, depth, step text, scores, answer, tags."""
        return [
            {
                "id": n.id,
                "parent": n.parent.id if n.parent is not None else None,
                "depth": n.depth,
                "step": n.step,
                "value": round(n.value, 6),
                "step_scores": [round(s, 6) for s in n.step_scores],
                "terminal": n.terminal,
                "answer": n.answer,
                "visits": n.visits,
                "tags": sorted(n.tags),
            }
            for n in self.nodes
        ]
