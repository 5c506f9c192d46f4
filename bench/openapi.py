"""Importing a large OpenAPI description: time and peak memory of each step.

    .venv/bin/python bench/openapi.py [--operations 1000]

Generates a valid OpenAPI 3.0 document with that many operations (four methods on each of
operations/4 paths, every third path with a mixed segment, scopes from a catalogue of 50),
then measures, each in its own run under tracemalloc: reading and validating it, mapping it to
routes, and compiling the route table. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from scopegate.config.openapi import import_openapi
from scopegate.config.openapi_document import read_openapi
from scopegate.pipeline.routing import compile_routes

METHODS = ("get", "put", "post", "delete")


def document(operations: int) -> dict[str, Any]:
    scopes = {f"scope{i}": f"Scope number {i}" for i in range(50)}
    paths: dict[str, Any] = {}
    for index in range(operations // len(METHODS)):
        template = f"/tenants/{{tenant}}/items{index}/" + (
            "thumb.{ext}" if index % 3 == 0 else "{id}"
        )
        names = ["tenant", "ext" if index % 3 == 0 else "id"]
        paths[template] = {
            "parameters": [
                {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
                for n in names
            ],
            **{
                method: {
                    "operationId": f"{method}-{index}",
                    "security": [
                        {"oauth": [f"scope{(index + n) % 50}"]} for n in range(1 + index % 2)
                    ],
                    "responses": {"200": {"description": "ok"}},
                }
                for method in METHODS
            },
        }
    return {
        "openapi": "3.0.3",
        "info": {"title": "bench", "version": "1"},
        "servers": [{"url": "https://api.example.com/v1"}],
        "paths": paths,
        "components": {"securitySchemes": {"oauth": {"type": "oauth2", "flows": {
            "clientCredentials": {"tokenUrl": "https://id.example.com/token", "scopes": scopes}}}}},
    }  # fmt: skip


def measured(step: Callable[[], object]) -> tuple[float, float, object]:
    """Seconds and peak MiB allocated while `step` runs, and what it returned."""
    tracemalloc.start()
    start = time.perf_counter()
    result = step()
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / (1 << 20)
    tracemalloc.stop()
    return seconds, peak, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        file = Path(directory) / "api.json"
        file.write_text(json.dumps(document(args.operations)))
        size = file.stat().st_size
        read = measured(lambda: read_openapi(str(file)))
        imported = measured(lambda: import_openapi(str(file), "api", server_path=True))
        api: Any = imported[2]
        compiled = measured(lambda: compile_routes(api.routes))
        untraced = time.perf_counter()
        import_openapi(str(file), "api", server_path=True)
        untraced = time.perf_counter() - untraced
    print(
        f"{args.operations} operations, {len(api.routes)} routes, document {size / 1024:.0f} KiB\n"
    )
    print("| step | seconds (under tracemalloc) | peak MiB |")
    print("|---|---:|---:|")
    print(f"| read + validate | {read[0]:.2f} | {read[1]:.1f} |")
    print(f"| read + validate + map (import) | {imported[0]:.2f} | {imported[1]:.1f} |")
    print(f"| compile the route table | {compiled[0]:.3f} | {compiled[1]:.1f} |")
    print(f"\nimport without tracemalloc: {untraced:.2f} s")


if __name__ == "__main__":
    main()
