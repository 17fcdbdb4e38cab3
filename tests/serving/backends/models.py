"""Test models for the transformers and compiled backends, shared by tests/serving/backends and
tests/serving/client: a tiny BERT sentiment classifier built from a config (the hub is unreachable), and
the compiler's own TorchScript / AOTInductor outputs of the small torch models (each built once per run:
a .pt2 build takes 10-25 s)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tests.serving.conftest import HEADLINES, SENTIMENTS

WORDS = sorted({w for text, _ in HEADLINES for w in text.split()})
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
MAX_BATCH = 8  # the compiled outputs' max_batch_size (a .pt2's batch range ends there)


@contextmanager
def offline():
    """No hub requests while building the snapshot; the process's settings are restored afterwards
    (other suites in the same run pull from a local hub)."""
    from huggingface_hub import constants

    saved_env = {key: os.environ.get(key) for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    saved_constant = constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"] = os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_constant
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_tiny_bert(folder: Path, *, steps: int = 40) -> Path:
    """A 2-layer BERT (hidden 32) over a WordPiece vocab of the headlines' words, trained a few steps to
    tell the three sentiments apart, saved with save_pretrained (safetensors) and its tokenizer."""
    with offline():
        return _build_tiny_bert(folder, steps)


def _build_tiny_bert(folder: Path, steps: int) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    # transformers 5 takes the WordPiece vocabulary as `vocab` (a `vocab_file` argument is silently ignored).
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)}, model_max_length=32)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, num_labels=len(SENTIMENTS),
                        id2label=dict(enumerate(SENTIMENTS)), label2id={s: i for i, s in enumerate(SENTIMENTS)})
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
        texts, labels = zip(*HEADLINES)
        batch = tokenizer(list(texts), padding=True, return_tensors="pt")
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for _ in range(steps):
            optimizer.zero_grad()
            model(**batch, labels=torch.tensor(labels)).loss.backward()
            optimizer.step()
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


_SNAPSHOT: list[Path] = []


def tiny_bert_snapshot(root: Path) -> Path:
    """The tiny BERT's folder, built under `root` by the first caller of the run (read-only for all)."""
    if not _SNAPSHOT:
        _SNAPSHOT.append(build_tiny_bert(root / "tiny-bert"))
    return _SNAPSHOT[0]


@dataclass(frozen=True)
class CompiledOutput:
    """A validated compile (the compiler's Triton entry folder) and what its record carries."""

    compiled: Any            # services.compiler.build.Compiled
    target: str
    kwargs: dict[str, Any]   # as the record carries them (max_batch_size included)

    @property
    def model_file(self) -> Path:
        return self.compiled.entry / self.compiled.primary.path

    def record(self, source_artifact_id: str, signer):
        """The record the compiler registers, signed by `signer` over its files as the compiler signs them."""
        from services.compiler.converters import compiled_message
        from services.core.artifacts.signing import signature_message

        metrics = {**self.compiled.metrics, "size_ratio": 0.0}
        bundle = signer.sign_files(self.compiled.entry, [f.path for f in self.compiled.files])
        return compiled_message(source_artifact_id, "torchscript", self.target, self.compiled, self.kwargs, metrics,
                                signature=signature_message(signer, bundle))


_BUILT: dict[tuple[str, str], CompiledOutput] = {}


def compiled_output(name: str, metadata: Mapping[str, Any], state_dict: Mapping[str, Any], target: str,
                    root: Path) -> CompiledOutput:
    """The torchscript compiler's `target` ("pt" or "pt2") output of a model, validated against the eager
    module as the compile service does; built once per test run for each (name, target)."""
    key = (name, target)
    if key not in _BUILT:
        from services.compiler.build import compile_and_validate
        from services.compiler.compilers.torchscript import TorchScriptCompiler
        from services.compiler.models import load_module
        from services.compiler.settings import CompilerSettings
        from services.compiler.signature import signature_for
        from services.compiler.validation import ValidationPolicy

        compiler = TorchScriptCompiler(CompilerSettings())
        signature = signature_for(metadata)
        kwargs = compiler.check(target, {}, signature)
        module = load_module(metadata["architecture"], state_dict)
        entry = root / f"{name}-{target}"
        compiled = compile_and_validate(compiler, target, kwargs, module, signature, MAX_BATCH,
                                        ValidationPolicy().checked(MAX_BATCH), entry)
        assert compiled.metrics["passed"], compiled.metrics
        _BUILT[key] = CompiledOutput(compiled, target, {**kwargs, "max_batch_size": MAX_BATCH})
    return _BUILT[key]
