"""Recipes: the papers' experiments as YAML specs under ``recipes/`` (``lth/lenet_mnist-small.yaml``).

Looked up in ``./recipes`` and in the source checkout's ``recipes/`` (an editable install), so
``prunelab run lth/lenet_mnist-small`` works from anywhere and ``prunelab run recipes/...yaml`` from the
repository root.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional


def recipe_dirs() -> list[Path]:
    dirs = [Path.cwd() / "recipes", Path(__file__).resolve().parents[3] / "recipes"]
    out = []
    for d in dirs:
        if d.is_dir() and d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def _description(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def list_recipes() -> list[tuple[str, Path, str]]:
    """(name, path, first comment line) of every recipe, names like ``lth/lenet_mnist-small``."""
    seen, out = set(), []
    for d in recipe_dirs():
        for p in sorted(d.rglob("*.yaml")):
            name = p.relative_to(d).with_suffix("").as_posix()
            if name not in seen:
                seen.add(name)
                out.append((name, p, _description(p)))
    return sorted(out)


def find_recipe(name: str) -> Optional[Path]:
    """A recipe by name (``lth/lenet_mnist-small``, with or without ``.yaml``), or None."""
    stem = name[:-5] if name.endswith(".yaml") else name
    stem = stem[len("recipes/"):] if stem.startswith("recipes/") else stem
    for n, p, _ in list_recipes():
        if n == stem:
            return p
    return None
