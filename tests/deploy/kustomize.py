"""A minimal kustomize for the tests: the features deploy/k8s uses, and a loud error for any other.

`kubectl kustomize` is used to cross-check it where kubectl exists; this keeps the k8s tests running
on machines without it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "replicas", "images", "namespace"}


class Unsupported(Exception):
    """The kustomization uses a feature this renderer does not implement."""


def build(root: Path) -> list[dict]:
    spec = yaml.safe_load((root / "kustomization.yaml").read_text()) or {}
    if extra := set(spec) - SUPPORTED:
        raise Unsupported(f"{root}: kustomization keys {sorted(extra)} are not implemented here")
    objects: list[dict] = []
    for resource in spec.get("resources", []):
        path = root / resource
        objects += build(path) if path.is_dir() else [o for o in yaml.safe_load_all(path.read_text()) if o]
    for patch in spec.get("patches", []):
        if set(patch) != {"path"}:
            raise Unsupported(f"{root}: only file patches (path:) are implemented, not {sorted(patch)}")
        body = yaml.safe_load((root / patch["path"]).read_text())
        target = find(objects, body["kind"], body["metadata"]["name"])
        merge(target, body)
    for replica in spec.get("replicas", []):
        matches = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")
                   and o["metadata"]["name"] == replica["name"]]
        if not matches:
            raise KeyError(f"replicas: no workload named {replica['name']}")
        for obj in matches:
            obj["spec"]["replicas"] = replica["count"]
    for image in spec.get("images", []):
        _set_image(objects, image)
    if namespace := spec.get("namespace"):
        for obj in objects:
            obj["metadata"]["namespace"] = namespace
    return objects


def find(objects: list[dict], kind: str, name: str) -> dict:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise KeyError(f"no {kind} named {name}")


def merge(target: dict, patch: dict) -> None:
    """Strategic merge, simplified: maps merge, lists of named items merge by name, other lists replace."""
    for key, value in patch.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge(current, value)
        elif _named_list(value) and _named_list(current):
            by_name = {item["name"]: item for item in current}
            for item in value:
                if item["name"] in by_name:
                    merge(by_name[item["name"]], item)
                else:
                    current.append(copy.deepcopy(item))
        else:
            target[key] = copy.deepcopy(value)


def _named_list(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)


def _set_image(objects: list[dict], image: dict) -> None:
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if name != image["name"]:
                continue
            name = image.get("newName", name)
            tag = image.get("newTag", tag)
            container["image"] = f"{name}:{tag}" if tag else name
