"""The demo seed: train the six models, store their weights, register them, publish the seed skills.

Idempotent: training is seeded and deterministic, so a second run produces the same bytes, the same
artifact ids and (the specs being unchanged) the same skill versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from safetensors.torch import save as safetensors_bytes

from mlmesh.v1 import common_pb2, registry_pb2
from services.core.artifacts.manifest import parse_manifest
from services.core.errors import IntegrityError, NotFound
from services.mesh.client import CALL_TIMEOUT_S, MeshClient
from services.mesh.demo.models import RECIPES, Trained
from services.mesh.demo.store import LocalObjectStore, local_root

SEED = 20240601
SKILLS_DIR = Path(__file__).resolve().parents[3] / "configs" / "skills"
SEED_SKILLS = ("regime_aware_alpha.yaml", "multi_horizon_forecast.yaml")
SAFETENSORS_MEDIA_TYPE = "application/vnd.safetensors"
SIDECAR_MEDIA_TYPE = "text/plain"
ALIASES = ("prod",)


@dataclass
class Packaged:
    name: str
    manifest: dict[str, Any]
    expected_id: str
    new_objects: int


@dataclass
class DemoResult:
    artifacts: list[common_pb2.Artifact] = field(default_factory=list)
    new_objects: int = 0
    skills: list[registry_pb2.PublishSkillResponse] = field(default_factory=list)


def train_all(console: Console | None) -> list[Trained]:
    """Every recipe, seeded; one thread, so the bytes do not depend on the machine's core count.

    Torch's global settings are restored afterwards: callers (tests) may share the process.
    """
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    trained: list[Trained] = []
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    progress = Progress(*columns, console=console, disable=console is None, transient=False)
    try:
        with progress, torch.random.fork_rng():
            for offset, recipe in enumerate(RECIPES):
                task = progress.add_task(recipe.name, total=recipe.steps)
                torch.manual_seed(SEED + offset)   # initial weights
                gen = torch.Generator().manual_seed(SEED + offset)  # data and batches
                trained.append(recipe.train(gen, recipe.steps, lambda n, t=task: progress.advance(t, n)))
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
    return trained


def package(model: Trained, store: LocalObjectStore) -> Packaged:
    """Weights as safetensors plus a `.sha256` sidecar, both content-addressed in the store; the manifest."""
    state = {k: v.detach().contiguous() for k, v in model.module.state_dict().items()}
    # One header metadata key only: safetensors writes `__metadata__` from a Rust HashMap, so two or
    # more keys come out in a random order per process and the same weights would hash differently.
    weights = safetensors_bytes(state, metadata={"format": "pt"})
    weights_hex, created_w = store.put(weights)
    sidecar = f"{weights_hex}\n".encode()
    sidecar_hex, created_s = store.put(sidecar)
    manifest = {
        "files": [
            {"path": "model.safetensors", "sha256": weights_hex, "size": len(weights),
             "media_type": SAFETENSORS_MEDIA_TYPE},
            {"path": "model.safetensors.sha256", "sha256": sidecar_hex, "size": len(sidecar),
             "media_type": SIDECAR_MEDIA_TYPE},
        ],
        "framework": "torch",
        "format": "safetensors",
        "metadata": {"name": model.name, "seed": SEED, **model.metadata},
    }
    expected = parse_manifest(manifest).artifact_id
    return Packaged(model.name, manifest, expected, int(created_w) + int(created_s))


def manifest_proto(manifest: dict[str, Any]) -> common_pb2.Manifest:
    message = common_pb2.Manifest(
        files=[common_pb2.ArtifactFile(**f) for f in manifest["files"]],
        framework=manifest["framework"], format=manifest["format"],
    )
    message.metadata.update(manifest["metadata"])
    return message


def skill_files(skills_dir: Path = SKILLS_DIR) -> list[Path]:
    paths = [skills_dir / name for name in SEED_SKILLS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NotFound(f"seed skill spec not found: {', '.join(missing)}", field="skills")
    return paths


async def register_and_publish(client: MeshClient, packaged: list[Packaged], skills: list[Path]) -> DemoResult:
    result = DemoResult(new_objects=sum(p.new_objects for p in packaged))
    async with client.registry() as registry:
        for item in packaged:
            artifact = await registry.RegisterArtifact(
                registry_pb2.RegisterArtifactRequest(
                    manifest=manifest_proto(item.manifest), name=item.name, aliases=list(ALIASES),
                    labels={"origin": "mlmesh-demo"}, source_uri=f"demo://synthetic/{item.name}",
                ),
                timeout=CALL_TIMEOUT_S,
            )
            if artifact.id != item.expected_id:
                # The registry hashed a different manifest than we built: the Struct round trip changed it.
                raise IntegrityError(f"{item.name}: registry id {artifact.id} != local id {item.expected_id}",
                                     field="manifest")
            result.artifacts.append(artifact)
        for path in skills:
            request = registry_pb2.PublishSkillRequest(spec_yaml=path.read_text(encoding="utf-8"))
            result.skills.append(await registry.PublishSkill(request, timeout=CALL_TIMEOUT_S))
    return result


async def seed(client: MeshClient, console: Console | None, skills_dir: Path = SKILLS_DIR) -> DemoResult:
    """The whole demo seed against the registry `client` points at."""
    skills = skill_files(skills_dir)  # before training: a missing spec should fail in a second, not after
    store = LocalObjectStore(local_root(client.mesh.object_store_url))
    trained = train_all(console)
    packaged = [package(model, store) for model in trained]
    return await register_and_publish(client, packaged, skills)
