"""The demo seed: train the six models, store their weights, register them, publish the seed skills; with
serving up, serve the models and run both seed skills once (demo/skills.py).

Idempotent: training is seeded and deterministic, so a second run produces the same bytes, the same
artifact ids and (the specs being unchanged) the same skill versions; the sessions are reused, and
each seed run adds one more run to the ledger.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mlmesh.v1 import common_pb2, registry_pb2, serving_pb2
from services.core.artifacts.save import SavedArtifact
from services.core.artifacts.signing import signature_message
from services.core.artifacts.toolkit import ArtifactToolkit, build_artifact_toolkit
from services.core.auth.policy import ALL_SCOPES, REGISTRY_WRITE
from services.core.auth.principal import Principal, reset_principal, set_principal
from services.core.clients.registry import RegistryClient, lineage_sink
from services.core.errors import IntegrityError, NotFound
from services.core.lineage import LineageBus
from services.mesh.client import MeshClient
from services.mesh.demo.models import RECIPES, Trained
from services.mesh.demo.skills import DemoRun, deploy_sessions, print_runs, run_seed_skills, serving_is_up

SEED = 20240601
SKILLS_DIR = Path(__file__).resolve().parents[3] / "configs" / "skills"
SEED_SKILLS = ("regime_aware_alpha.yaml", "multi_horizon_forecast.yaml")
ALIASES = ("prod",)


@dataclass
class DemoResult:
    artifacts: list[common_pb2.Artifact] = field(default_factory=list)
    skills: list[registry_pb2.PublishSkillResponse] = field(default_factory=list)
    sessions: list[serving_pb2.ServingSession] = field(default_factory=list)   # empty when serving is not up
    runs: list[DemoRun] = field(default_factory=list)


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


async def save(model: Trained, kit: ArtifactToolkit) -> SavedArtifact:
    """Weights as safetensors with a `.sha256` sidecar, signed and stored write-once, as every service saves."""
    meta = dict(model.metadata)
    return await kit.saver.save(
        model.module.state_dict(),
        architecture=meta.pop("architecture"),
        training_stats=meta.pop("training_stats", None),
        feature_names=meta.pop("feature_names", None),
        metadata={"name": model.name, "seed": SEED, **meta},
        source=f"demo://synthetic/{model.name}",
    )


def skill_files(skills_dir: Path = SKILLS_DIR) -> list[Path]:
    paths = [skills_dir / name for name in SEED_SKILLS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise NotFound(f"seed skill spec not found: {', '.join(missing)}", field="skills")
    return paths


async def seed(client: MeshClient, console: Console | None, skills_dir: Path = SKILLS_DIR,
               run_skills: bool | None = None) -> DemoResult:
    """The whole demo seed against the registry `client` points at; then, when serving is up (or
    `run_skills` says so), the models are served and both seed skills run once (printed to `console`)."""
    skills = skill_files(skills_dir)  # before training: a missing spec should fail in a second, not after
    trained = train_all(console)
    # The demo acts as the operator: the handlers check its scopes like any caller's.
    token = set_principal(Principal(client.subject, frozenset(ALL_SCOPES), "registry", "demo", time.time() + 3600))
    registry = RegistryClient.connect(client.endpoint("registry").address, client.issuer, subject=client.subject,
                                      scopes=ALL_SCOPES)
    try:
        bus = LineageBus()
        bus.subscribe(lineage_sink(registry))
        kit = build_artifact_toolkit(client.mesh, bus, service="mesh", write_scope=REGISTRY_WRITE,
                                     read_scope=REGISTRY_WRITE)
        result = DemoResult()
        for model in trained:
            saved = await save(model, kit)
            artifact = await registry.register_artifact(
                saved.manifest, name=model.name, aliases=ALIASES, labels={"origin": "mlmesh-demo"},
                source_uri=f"demo://synthetic/{model.name}", signature=signature_message(kit.signer, saved.signature),
            )
            if artifact.id != saved.artifact_id:
                raise IntegrityError(f"{model.name}: registry id {artifact.id} != local id {saved.artifact_id}",
                                     field="manifest")
            result.artifacts.append(artifact)
        for path in skills:
            result.skills.append(await registry.publish_skill(path.read_text(encoding="utf-8")))
    finally:
        reset_principal(token)
        await registry.close()
    if run_skills if run_skills is not None else serving_is_up(client):
        result.sessions = await deploy_sessions(client, result.artifacts)
        result.runs = await run_seed_skills(client, result.skills)
        if console is not None:
            print_runs(console, result.artifacts, result.sessions, result.runs)
    elif console is not None:
        console.print("serving is not running here: the seed skills were published, not run", style="dim")
    return result
