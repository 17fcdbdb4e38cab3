"""A torch checkpoint (torch.save) that an operator allowed (`allow_pickle`, scope puller.allow_pickle), as
for pulls: read with `torch.load(weights_only=True)`, which builds tensors and plain containers and refuses
any other global, in this throw-away inspector process; written as `model.safetensors` and the pickle
removed, so only safetensors are stored. The architecture (and feature names, class labels) may ride in the
checkpoint as plain values next to the state dict ({"architecture": {...}, "state_dict": {...}}); they go
into the safetensors header, where a safetensors push keeps them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from services.core.errors import IntegrityError, InvalidArgument
from services.puller.formats.files import field_of
from services.puller.weights import load_weights_only

CONVERTED = "model.safetensors"
_CARRIED = ("architecture", "feature_names", "class_labels")


def convert_allowed_pickle(folder: Path, rel: str) -> str:
    """`rel` replaced by CONVERTED in `folder`; the new file's relative path."""
    import torch
    from safetensors.torch import save_file

    path = folder / rel
    if (folder / CONVERTED).exists() and rel != CONVERTED:
        raise InvalidArgument(f"{CONVERTED} was pushed beside {rel}; that name is where its weights go",
                              field=field_of(CONVERTED))
    try:
        state_dict = load_weights_only(path, rel)
    except IntegrityError as exc:
        raise InvalidArgument(exc.message, field=field_of(rel)) from None
    loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=False)  # passed once already
    carried = {k: json.dumps(loaded[k]) for k in _CARRIED if isinstance(loaded, Mapping) and k in loaded}
    tensors = {name: tensor.detach().contiguous().clone() for name, tensor in state_dict.items()}
    save_file(tensors, folder / CONVERTED, metadata=carried)
    path.unlink()
    return CONVERTED
