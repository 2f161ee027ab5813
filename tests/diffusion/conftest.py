"""The built-in digits pack (trained once per cache, ~10 s on one core) and NFE counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")


@pytest.fixture(scope="session")
def tiny() -> Iterator[object]:
    """The built-in digits engine (default recipe), single-threaded."""
    from testtime.diffusion.engines import make_engine

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield make_engine("digits")
    torch.set_num_threads(before)


class Counter:
    """Counts the samples every forward pass of a module saw (its NFEs)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.samples = 0
        self.calls = 0
        self.handle = module.register_forward_hook(self.hook)

    def hook(self, module: object, args: tuple[object, ...], out: object) -> None:
        first = args[0] if args else None
        self.samples += len(first) if isinstance(first, torch.Tensor) else 0
        self.calls += 1

    def close(self) -> None:
        self.handle.remove()


@pytest.fixture
def counter() -> Iterator[type[Counter]]:
    """The Counter class; hooks are removed by the test via close()."""
    yield Counter
