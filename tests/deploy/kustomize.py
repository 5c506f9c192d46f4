"""Enough of `kustomize build` to render deploy/kubernetes without the kustomize binary.

It implements the fields those kustomizations use, with kustomize's semantics: `resources`
(files and base directories), `configMapGenerator` (`files`, `literals`; `behavior` create,
replace or merge; the content-hash name suffix, computed the way kustomize computes it, and the
rewriting of the references to it), `namespace`, `images`, `replicas`, and `patches` in JSON 6902
form with a `target`. Any other field, a strategic-merge patch, or a patch target that matches
nothing is an error: a manifest this renderer cannot read exactly is refused, never rendered
approximately.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED_FIELDS = frozenset(
    {
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "images",
        "replicas",
        "configMapGenerator",
        "patches",
    }
)
CLUSTER_SCOPED_KINDS = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PriorityClass",
        "StorageClass",
    }
)
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
SCALABLE_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})


class KustomizeError(Exception):
    """The kustomization is wrong, or uses something this renderer does not implement."""


@dataclass
class _Build:
    resources: list[Resource]
    hashed: set[str] = field(default_factory=set)  # generated ConfigMaps awaiting their suffix


def render(directory: Path) -> list[Resource]:
    """The resources `kustomize build DIRECTORY` would print (in file order, not sorted by kind)."""
    built = _build(directory.resolve())
    renamed: dict[tuple[str | None, str], str] = {}
    for resource in built.resources:
        meta = resource["metadata"]
        if resource["kind"] == "ConfigMap" and meta["name"] in built.hashed:
            new_name = f"{meta['name']}-{config_map_hash(resource)}"
            renamed[(meta.get("namespace"), meta["name"])] = new_name
            meta["name"] = new_name
    for resource in built.resources:
        for pod in _pod_specs(resource):
            _rename_config_map_references(pod, resource["metadata"].get("namespace"), renamed)
    return built.resources


def config_map_hash(config_map: Resource) -> str:
    """kustomize's name suffix: sha256 of the JSON of kind, name and data; ten characters of its
    hex digest with 0, 1, 3, a and e replaced by g, h, k, m and t (no accidental words)."""
    document: dict[str, Any] = {
        "data": config_map.get("data"),
        "kind": "ConfigMap",
        "name": config_map["metadata"]["name"],
    }
    if config_map.get("binaryData"):
        document["binaryData"] = config_map["binaryData"]
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Go's encoding/json escapes these three for HTML safety; match it byte for byte.
    encoded = encoded.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    digest = hashlib.sha256(encoded.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _build(directory: Path) -> _Build:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise KustomizeError(f"{directory}: no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text())
    if not isinstance(kustomization, dict):
        raise KustomizeError(f"{path}: not a mapping")
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(f"{path}: fields this renderer does not implement: {unsupported}")
    if kustomization.get("kind", "Kustomization") != "Kustomization":
        raise KustomizeError(f"{path}: kind must be Kustomization")

    built = _Build([])
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            base = _build(target)
            built.resources.extend(base.resources)
            built.hashed |= base.hashed
        elif target.is_file():
            documents = yaml.safe_load_all(target.read_text())
            built.resources.extend(doc for doc in documents if doc is not None)
        else:
            raise KustomizeError(f"{path}: resource {entry} does not exist")
    _check_unique(built.resources, path)

    for generator in kustomization.get("configMapGenerator", []):
        _generate_config_map(directory, generator, built)
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, patch, built.resources)
    if "namespace" in kustomization:
        for resource in built.resources:
            if resource["kind"] not in CLUSTER_SCOPED_KINDS:
                resource["metadata"]["namespace"] = kustomization["namespace"]
    for replica in kustomization.get("replicas", []):
        _set_replicas(replica, built.resources, path)
    for image in kustomization.get("images", []):
        _set_image(image, built.resources, path)
    return built


def _check_unique(resources: list[Resource], path: Path) -> None:
    seen: set[tuple[str, str, str | None, str]] = set()
    for resource in resources:
        for key in ("apiVersion", "kind", "metadata"):
            if key not in resource:
                raise KustomizeError(f"{path}: a resource has no {key}: {resource}")
        meta = resource["metadata"]
        identity = (resource["apiVersion"], resource["kind"], meta.get("namespace"), meta["name"])
        if identity in seen:
            raise KustomizeError(f"{path}: {identity} appears twice")
        seen.add(identity)


def _generate_config_map(directory: Path, generator: dict[str, Any], built: _Build) -> None:
    unknown = set(generator) - {"name", "files", "literals", "behavior"}
    if unknown:
        raise KustomizeError(f"configMapGenerator: fields not implemented: {unknown}")
    name = generator["name"]
    data: dict[str, str] = {}
    for entry in generator.get("files", []):
        key, _, source = entry.rpartition("=")
        file = directory / (source or entry)
        data[key or file.name] = file.read_text()
    for literal in generator.get("literals", []):
        key, sep, value = literal.partition("=")
        if not sep:
            raise KustomizeError(f"configMapGenerator {name}: literal {literal!r} has no '='")
        data[key] = value
    behavior = generator.get("behavior", "create")
    existing = [r for r in built.resources if r["kind"] == "ConfigMap" and _named(r, name)]
    if behavior == "create":
        if existing:
            raise KustomizeError(f"configMapGenerator {name}: exists already (use behavior)")
        built.resources.append(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
        )
        built.hashed.add(name)
    elif behavior in ("replace", "merge"):
        if len(existing) != 1 or name not in built.hashed:
            raise KustomizeError(f"configMapGenerator {name}: {behavior} needs a generated base")
        if behavior == "replace":
            existing[0]["data"] = data
        else:
            existing[0]["data"] = {**existing[0].get("data", {}), **data}
    else:
        raise KustomizeError(f"configMapGenerator {name}: unknown behavior {behavior!r}")


def _named(resource: Resource, name: str) -> bool:
    return bool(resource["metadata"]["name"] == name)


def _group_version(resource: Resource) -> tuple[str, str]:
    group, _, version = str(resource["apiVersion"]).rpartition("/")
    return group, version


def _matches(resource: Resource, target: dict[str, Any]) -> bool:
    unknown = set(target) - {"group", "version", "kind", "name", "namespace"}
    if unknown:
        raise KustomizeError(f"patch target: fields not implemented: {unknown}")
    group, version = _group_version(resource)
    actual = {
        "group": group,
        "version": version,
        "kind": resource["kind"],
        "name": resource["metadata"]["name"],
        "namespace": resource["metadata"].get("namespace"),
    }
    return all(actual[key] == value for key, value in target.items())


def _apply_patch(directory: Path, entry: dict[str, Any], resources: list[Resource]) -> None:
    if set(entry) - {"target", "patch", "path"} or ("patch" in entry) == ("path" in entry):
        raise KustomizeError(f"patches: an entry needs a target and one of patch, path: {entry}")
    text = entry["patch"] if "patch" in entry else (directory / entry["path"]).read_text()
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise KustomizeError("patches: only JSON 6902 patches (a list of operations) are read")
    if "target" not in entry:
        raise KustomizeError("patches: a JSON 6902 patch needs a target")
    targets = [r for r in resources if _matches(r, entry["target"])]
    if not targets:
        raise KustomizeError(f"patches: target {entry['target']} matches no resource")
    for resource in targets:
        for operation in operations:
            json_patch(resource, operation)


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise KustomizeError(f"JSON pointer {path!r} must start with '/'")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def json_patch(document: Resource, operation: dict[str, Any]) -> None:
    """One RFC 6902 operation (add, remove, replace, test) applied in place."""
    op = operation["op"]
    *parents, last = _pointer(operation["path"])
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(node, list):
        index = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(index, value)
        elif op == "replace":
            node[index] = value
        elif op == "remove":
            del node[index]
        elif op == "test":
            if node[index] != value:
                raise KustomizeError(f"test failed at {operation['path']}")
        else:
            raise KustomizeError(f"JSON patch op {op!r} is not implemented")
        return
    if op == "add":
        node[last] = value
    elif op in ("replace", "remove", "test"):
        if last not in node:
            raise KustomizeError(f"{op}: {operation['path']} does not exist")
        if op == "replace":
            node[last] = value
        elif op == "remove":
            del node[last]
        elif node[last] != value:
            raise KustomizeError(f"test failed at {operation['path']}")
    else:
        raise KustomizeError(f"JSON patch op {op!r} is not implemented")


def _pod_specs(resource: Resource) -> list[dict[str, Any]]:
    if resource["kind"] == "Pod":
        return [resource["spec"]]
    if resource["kind"] in WORKLOAD_KINDS:
        return [resource["spec"]["template"]["spec"]]
    if resource["kind"] == "CronJob":
        return [resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def _rename_config_map_references(
    pod: dict[str, Any], namespace: str | None, renamed: dict[tuple[str | None, str], str]
) -> None:
    def new(name: str) -> str:
        return renamed.get((namespace, name), name)

    for volume in pod.get("volumes", []):
        if "configMap" in volume:
            volume["configMap"]["name"] = new(volume["configMap"]["name"])
        for source in volume.get("projected", {}).get("sources", []):
            if "configMap" in source:
                source["configMap"]["name"] = new(source["configMap"]["name"])
    for container in _containers(pod):
        for env_from in container.get("envFrom", []):
            if "configMapRef" in env_from:
                env_from["configMapRef"]["name"] = new(env_from["configMapRef"]["name"])
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("configMapKeyRef")
            if ref is not None:
                ref["name"] = new(ref["name"])


def _set_replicas(entry: dict[str, Any], resources: list[Resource], path: Path) -> None:
    targets = [r for r in resources if r["kind"] in SCALABLE_KINDS and _named(r, entry["name"])]
    if not targets:
        raise KustomizeError(f"{path}: replicas: no workload named {entry['name']}")
    for resource in targets:
        resource["spec"]["replicas"] = int(entry["count"])


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """An image reference as (name, tag, digest): `registry:5000/app:1.2@sha256:…`."""
    name, _, digest = image.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def _set_image(entry: dict[str, Any], resources: list[Resource], path: Path) -> None:
    unknown = set(entry) - {"name", "newName", "newTag", "digest"}
    if unknown:
        raise KustomizeError(f"{path}: images: fields not implemented: {unknown}")
    found = False
    for resource in resources:
        for pod in _pod_specs(resource):
            for container in _containers(pod):
                name, tag, digest = split_image(container["image"])
                if name != entry["name"]:
                    continue
                found = True
                name = entry.get("newName", name)
                if "newTag" in entry:
                    tag = str(entry["newTag"])
                if "digest" in entry:
                    tag, digest = None, str(entry["digest"])
                container["image"] = (
                    name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
                )
    if not found:
        raise KustomizeError(f"{path}: images: no container uses {entry['name']}")
