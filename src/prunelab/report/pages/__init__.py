"""Paper pages: each ``docs/results/<page>.md`` embeds tables and plots that one command rebuilds from the
results store, ``prunelab report --paper NAME`` (after ``prunelab run`` of the page's recipes).

A page is registered with :func:`register_page`: its name, the directory it writes (relative to the
repository root, or ``--out``), the recipes whose runs it reads and a ``build(data, out_dir)`` function.
``data`` is a :class:`PageData`: the per-(run, variant, round) frame with every scalar column
(``results_frame(..., extra=True)``), the planned runs, and access to stored rows and histories.
Pages report on the runs that are done and say how many of the planned ones that is.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import pandas as pd

from ...errors import ConfigError, unknown_name
from ...experiments import PlannedRun, Store, load_plan, results_frame


@dataclass
class PageData:
    store: Store
    runs: list[PlannedRun]          # every planned run of the page's recipes, in recipe order
    recipe_of: dict[str, str]       # run_id -> recipe name
    frame: pd.DataFrame             # finished runs only, with ``recipe`` and every scalar column
    _rows: dict = field(default_factory=dict, repr=False)

    @property
    def done(self) -> list[str]:
        return list(dict.fromkeys(self.frame["run_id"])) if len(self.frame) else []

    def recipe(self, name: str) -> pd.DataFrame:
        """The frame's rows of one recipe."""
        return self.frame[self.frame["recipe"] == name]

    def rows(self, run_id: str) -> list[dict]:
        """A run's stored rows with every value (lists and dicts too, e.g. GST's events)."""
        if run_id not in self._rows:
            self._rows[run_id] = self.store.metric_rows([run_id])
        return self._rows[run_id]

    def history(self, run_id: str) -> list[dict]:
        return self.store.history_rows(run_id)

    def coverage(self, recipes: Optional[Iterable[str]] = None) -> str:
        """``"`rec`: 12 of 15 runs done"`` per recipe (all the page's, or ``recipes``), for the tables."""
        done = set(self.done)
        parts = []
        for rec in (dict.fromkeys(self.recipe_of.values()) if recipes is None else recipes):
            ids = [rid for rid, r in self.recipe_of.items() if r == rec]
            parts.append(f"`{rec}`: {sum(i in done for i in ids)} of {len(ids)} runs done")
        return "; ".join(parts)

    def runs_line(self, recipe: str) -> str:
        """The closing line of a table built from one recipe's runs."""
        return f"Runs: {self.coverage([recipe])}."


@dataclass(frozen=True)
class Committed:
    """Rows committed beside a page before its runs went through the store: ``rows`` (a glob, relative to
    the repository root) were made as ``recipe`` describes (after the ``set`` overrides, ``"seed=1"``);
    ``match`` maps spec paths to row columns, or is empty when the overridden plan holds one run;
    ``defaults`` / ``copies`` fill columns older rows lack (see :func:`~prunelab.experiments.imports.read_rows`)."""
    recipe: str
    rows: str
    match: dict
    note: str = ""
    set: tuple[str, ...] = ()
    defaults: dict = field(default_factory=dict)
    copies: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Page:
    name: str
    out: str
    recipes: tuple[str, ...]
    build: Callable[[PageData, Path], list[Path]]
    title: str = ""
    committed: tuple[Committed, ...] = ()


PAGES: dict[str, Page] = {}
_MODULES = ("lth", "dlt", "sanity", "stability", "cs")


def register_page(name: str, out: str, recipes: tuple[str, ...], title: str = "",
                  committed: tuple[Committed, ...] = ()):
    def deco(fn):
        PAGES[name] = Page(name, out, tuple(recipes), fn, title, tuple(committed))
        return fn
    return deco


def _load_all() -> None:
    for m in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{m}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{m}":
                raise


def list_pages() -> list[str]:
    _load_all()
    return sorted(PAGES)


def get_page(name: str) -> Page:
    _load_all()
    if name not in PAGES:
        raise unknown_name("page", name, PAGES)
    return PAGES[name]


def _repo_roots() -> list[Path]:
    # as for recipes: the working directory, then the source checkout this package runs from
    return list(dict.fromkeys([Path.cwd(), Path(__file__).resolve().parents[4]]))


def import_committed(name: str, store: Store, root: Optional[Path] = None) -> list[tuple[str, str]]:
    """Import a page's committed rows into ``store``; the globs start at ``root`` (default: the working
    directory when they match there, else the source checkout's root)."""
    from ...experiments.imports import import_rows, read_rows
    page = get_page(name)
    if not page.committed:
        raise ConfigError(f"page {name!r} has no committed rows to import; run its recipes: "
                          f"{', '.join(page.recipes)}")
    out, plans = [], {}
    for c in page.committed:
        roots = [Path(root)] if root is not None else _repo_roots()
        files = next((f for f in (sorted(r.glob(c.rows)) for r in roots) if f), [])
        if not files:
            raise ConfigError(f"page {name!r}: no files match {c.rows!r} under "
                              f"{', '.join(repr(str(r)) for r in roots)} (run from the repository root)")
        rows = read_rows(files, c.defaults, c.copies)
        key = (c.recipe, c.set)
        if key not in plans:   # planning looks the recipe up among all recipes: once per recipe is enough
            plans[key] = load_plan(c.recipe, c.set)
        out += import_rows(store, plans[key], rows, c.match, note=c.note or c.rows)
    return out


def page_data(page: Page, store: Store) -> PageData:
    runs, recipe_of = [], {}
    for rec in page.recipes:
        for r in load_plan(rec):
            runs.append(r)
            recipe_of[r.run_id] = rec
    frame = results_frame(store, list(recipe_of), extra=True)
    frame.insert(1, "recipe", frame["run_id"].map(recipe_of))
    return PageData(store, runs, recipe_of, frame)


def write_page(name: str, store: Store, out: Optional[Path] = None) -> tuple[list[Path], PageData]:
    """Rebuild page ``name``'s tables and plots from ``store`` into ``out`` (default: the page's own
    directory under the current working directory); returns the files written and the data used."""
    page = get_page(name)
    data = page_data(page, store)
    if not data.done:
        raise ConfigError(f"page {name!r}: none of the {len(data.runs)} planned runs of "
                          f"{', '.join(page.recipes)} is done in {store.root}; run them first "
                          f"(`prunelab run RECIPE`) or import their rows (`prunelab import`)")
    out = Path(out) if out is not None else Path(page.out)
    return page.build(data, out), data
