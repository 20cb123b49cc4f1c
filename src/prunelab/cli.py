"""Command line: ``prunelab run | status | results | report | import | export | list | demo``.

Exit codes: 0 success, 1 a run failed, 2 bad input (a spec error, an unknown name, a missing file).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import ConfigError, PrunelabError

EXIT_OK, EXIT_RUN_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _results_root(args) -> Path:
    from .experiments import default_results_root
    return Path(args.results) if args.results else default_results_root()


def _open_store(args, must_exist: bool = True):
    from .experiments import Store
    root = _results_root(args)
    if must_exist and not (root / "prunelab.db").is_file():
        raise ConfigError(f"no results store at {str(root)!r} (no prunelab.db there); run `prunelab run SPEC` "
                          f"first, or pass --results DIR (default: $PRUNELAB_RESULTS or ./prunelab-results)")
    return Store(root)


def _print_df(df) -> None:
    import pandas as pd
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 200,
                           "display.max_colwidth", 60):
        print(df.to_string(index=False))


# run -------------------------------------------------------------------------------------------------
def _spec_path(spec: str) -> Path:
    p = Path(spec)
    if p.is_file():
        return p
    from .experiments import find_recipe
    found = find_recipe(spec)
    if found is None:
        from .experiments import list_recipes
        names = [n for n, _, _ in list_recipes()]
        import difflib
        close = difflib.get_close_matches(spec, names, n=1)
        hint = f" Did you mean the recipe {close[0]!r}?" if close else ""
        raise ConfigError(f"spec {spec!r} is neither a file nor a recipe name (see `prunelab list recipes`).{hint}")
    return found


def _cmd_run(args) -> int:
    from .experiments import load_plan, make_executor, results_frame, run_plan, Store
    from .experiments.tables import summary_table

    planned = [r for spec in args.spec for r in load_plan(_spec_path(spec), args.set or [])]  # all validated first
    first = {}
    for r in planned:               # a run that two specs name runs once, where it first appears
        first.setdefault(r.run_id, r)
    runs = list(first.values())
    root = _results_root(args)
    if args.dry_run:
        from .experiments.provenance import artifacts_intact
        store = Store(root) if (root / "prunelab.db").is_file() else None
        for r in runs:
            row = store.get_run(r.run_id) if store else None
            cached = bool(row and row["status"] == "done" and artifacts_intact(store, r.run_id)[0])
            print(f"{r.run_id}  {r.label}  seed={r.spec.seed}  {'cached' if cached else 'to compute'}")
        return EXIT_OK
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs} is outside the allowed range [1, inf)")
    if args.address and args.executor != "ray":
        raise ConfigError(f"--address {args.address!r} needs --executor ray (got --executor {args.executor})")
    executor = make_executor(args.executor, jobs=args.jobs, address=args.address, threads=args.threads)
    log = (lambda msg: print(msg, flush=True))
    names = ", ".join(repr(n) for n in dict.fromkeys(r.spec.name for r in runs))
    print(f"{len(runs)} run(s) of {names} -> {root}", flush=True)
    outcomes = run_plan(runs, root, executor=executor, progress=not args.quiet, log=log)
    df = results_frame(Store(root), [r.run_id for r in runs])
    if not df.empty:
        print()
        _print_df(summary_table(df))
    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "cached", "failed")}
    print(f"\n{counts['done']} computed, {counts['cached']} cached, {counts['failed']} failed; results in {root}")
    if counts["failed"]:
        for o in outcomes:
            if o.status == "failed":
                print(f"prunelab: run {o.run_id} ({o.label}) failed: {o.error}", file=sys.stderr)
        return EXIT_RUN_FAILED
    return EXIT_OK


# status / results / report -----------------------------------------------------------------------------
def _cmd_status(args) -> int:
    from .experiments.leases import lease_alive
    from .experiments.tables import status_table

    store = _open_store(args)
    runs = store.runs()
    if not runs:
        print(f"no runs in {store.root}")
        return EXIT_OK
    done_rounds = {}
    for m in store.metric_rows():
        if m["variant"] == "ticket":
            done_rounds[m["run_id"]] = done_rounds.get(m["run_id"], 0) + 1
    # rounds counts the trained ticket rounds stored so far (round 0, the dense network, included)
    _print_df(status_table(runs, done_rounds, lease_alive))
    counts = {}
    for r in runs:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + f"  ({store.root})")
    return EXIT_OK


def _results_df(args):
    from .experiments import results_frame
    store = _open_store(args)
    df = results_frame(store, status=None if args.all else ("done",), extra=getattr(args, "extra", False))
    if args.name:
        df = df[df["name"] == args.name].reset_index(drop=True)
    return df


def _cmd_results(args) -> int:
    from .experiments.tables import summary_table

    df = _results_df(args)
    if args.csv:
        from .io import atomic_write_bytes
        atomic_write_bytes(args.csv, df.to_csv(index=False).encode())
        print(f"wrote {len(df)} rows to {args.csv}")
    if args.parquet:
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise ConfigError("--parquet needs pyarrow: pip install pyarrow (or 'prunelab[parquet]'); "
                              "--csv works without it") from None
        import io
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        from .io import atomic_write_bytes
        atomic_write_bytes(args.parquet, buf.getvalue())
        print(f"wrote {len(df)} rows to {args.parquet}")
    if df.empty:
        print("no finished runs" + (f" named {args.name!r}" if args.name else "") +
              ("" if args.all else " (--all includes unfinished ones)"))
        return EXIT_OK
    if not (args.csv or args.parquet) or args.table:
        _print_df(summary_table(df, args.metric))
    return EXIT_OK


def _cmd_report(args) -> int:
    if args.paper:
        from .report.pages import write_page
        if args.name or args.all or args.title:
            raise ConfigError("--paper takes its runs from the page's recipes; drop --name/--all/--title")
        files, data = write_page(args.paper, _open_store(args), Path(args.out) if args.out else None)
        print(f"page {args.paper}: {data.coverage()}")
        for f in files:
            print(f"  wrote {f}")
        return EXIT_OK
    from .report import write_report

    df = _results_df(args)
    if df.empty:
        raise ConfigError(f"no finished runs in {_results_root(args)} to report on")
    out = Path(args.out) if args.out else _results_root(args) / "report"
    title = args.title or ", ".join(sorted(df["name"].unique()))
    path = write_report(df, out, title=title)
    print(f"report: {path}")
    return EXIT_OK


def _cmd_import(args) -> int:
    from .experiments import Store, load_plan
    from .experiments.imports import import_rows, read_rows
    match = {}
    for m in args.match or []:
        path, sep, col = m.partition("=")
        if not sep or not path or not col:
            raise ConfigError(f"--match {m!r} is not of the form SPEC_PATH=COLUMN (e.g. seed=seed)")
        match[path] = col
    if args.paper:
        if args.spec or args.rows or args.match or args.set:
            raise ConfigError("--paper imports the page's committed rows; give no SPEC, ROWS, --match or --set")
        from .report.pages import import_committed
        out = import_committed(args.paper, Store(_results_root(args)))
        for rid, what in out:
            print(f"{rid}  {what}")
        return EXIT_OK
    if not args.spec or not args.rows:
        raise ConfigError("import needs SPEC ROWS... [--match SPEC_PATH=COLUMN], or --paper PAGE")
    runs = load_plan(_spec_path(args.spec), args.set or [])
    out = import_rows(Store(_results_root(args)), runs, read_rows(args.rows), match, note=args.note)
    for rid, what in out:
        print(f"{rid}  {what}")
    return EXIT_OK


# list / demo ----------------------------------------------------------------------------------------------
def _cmd_list(args) -> int:
    if args.what == "models":
        from .models import list_models
        print("\n".join(list_models()))
    elif args.what == "datasets":
        from .data import list_datasets
        print("\n".join(list_datasets()))
    elif args.what == "scores":
        from .primitives import list_scores
        print("\n".join(list_scores()))
    elif args.what == "methods":
        from .experiments import PROCEDURE_KINDS
        from .primitives import LTH_RATES, list_scores
        from .procedures import CONTROLS, REWINDS
        print(f"procedures (procedure.kind):     {', '.join(PROCEDURE_KINDS)}")
        print(f"scores (procedure.score):        {', '.join(list_scores())}")
        print(f"rewinds (procedure.rewind):      {', '.join(REWINDS)}")
        print(f"controls (procedure.controls):   {', '.join(CONTROLS)}")
        print(f"rate presets (procedure.rate):   {', '.join(sorted(LTH_RATES))}")
    else:
        from .experiments import list_recipes
        recipes = list_recipes()
        if not recipes:
            print("no recipes found (looked in ./recipes and the source checkout's recipes/)", file=sys.stderr)
            return EXIT_OK
        w = max(len(n) for n, _, _ in recipes)
        for name, _, desc in recipes:
            print(f"{name:<{w}}  {desc}")
    return EXIT_OK


def _cmd_demo(args) -> int:
    from .demo import run_demo, summarize
    # The demo's MLP is too small to gain from intra-op threads; extra threads only contend for cores.
    df = run_demo(args.out, seeds=tuple(range(args.seeds)), rounds=args.rounds, epochs=args.epochs,
                  data_root=args.data, device=args.device, progress=not args.quiet, threads=args.threads)
    print("\nIMP on MNIST-1D (test accuracy %, mean ± std over seeds):")
    print(summarize(df).to_string())
    print(f"\nper-run rows: {args.out}/rounds.csv; runs stored in {args.out}/store (rerun: cached)")
    return EXIT_OK


# export -------------------------------------------------------------------------------------------------
EXPORT_HELP = """\
Writes FILE (safetensors: the exported model's state dict, no pickle) and FILE with the suffix .json (the
architecture: model name, options, num_classes, input_shape, the pruned filters per conv, and the removal
report per layer). To load the exported model in Python:

    from prunelab.export import load_exported
    model = load_exported("FILE")        # rebuilds the smaller model from the .json, loads FILE's tensors

(load_exported rebuilds the registry model, re-runs export_pruned on the recorded filter mask without
its check to get the same smaller structure, then loads the saved state dict strictly.)"""


def _filter_entries(mask, model) -> dict[str, list[int]]:
    """``{conv weight name: pruned output channels}`` for the filter-shaped conv entries of ``mask``."""
    from torch import nn
    mods = dict(model.named_modules())
    out = {}
    for n, m in mask.items():
        conv = mods.get(n[: -len(".weight")]) if n.endswith(".weight") else None
        if isinstance(conv, nn.Conv2d) and m.dim() == 4 and tuple(m.shape[1:]) == (1, 1, 1):
            out[n] = (~m.reshape(-1).bool()).nonzero().flatten().tolist()
    return out


def _cmd_export(args) -> int:
    import json
    from .data import dataset_info
    from .experiments.spec import ExperimentSpec
    from .export import export_pruned, format_report, sidecar
    from .models import build_model
    from .io import atomic_write_bytes, load_tensors, save_tensors
    from .primitives.masks import Mask

    out = Path(args.out)
    if out.suffix == ".json":
        raise ConfigError(f"--out {str(out)!r}: the .json name is taken by the sidecar; use e.g. model.safetensors")
    store = _open_store(args)
    row = store.get_run(args.run_id)
    if row is None:
        raise ConfigError(f"unknown run id {args.run_id!r} in {store.root} (`prunelab status` lists the runs)")
    if row["status"] != "done":
        raise ConfigError(f"run {args.run_id} is {row['status']!r}, not done; finish it first (`prunelab run`)")
    arts = {a["kind"]: a["abspath"] for a in store.artifacts(args.run_id)}
    masks = {k[len("mask/"):]: p for k, p in arts.items() if k.startswith("mask/")}
    if args.variant is not None:
        if args.variant not in masks:
            raise ConfigError(f"run {args.run_id} has no mask of variant {args.variant!r}; "
                              f"its variants: {sorted(masks) or 'none'}")
        variant = args.variant
    elif len(masks) == 1:
        variant = next(iter(masks))
    elif not masks:
        raise ConfigError(f"run {args.run_id} has no filter mask (no mask artifact); export needs a run "
                          f"that prunes filters (e.g. a GST `stability` run)")
    else:
        raise ConfigError(f"run {args.run_id} has masks of several variants {sorted(masks)}; pick one with --variant")
    if "state/final" not in arts:
        raise ConfigError(f"run {args.run_id} has no final model state (state/final); nothing to export")

    spec = ExperimentSpec.model_validate_json(row["spec_json"])
    info = dataset_info(spec.dataset.name)
    model = build_model(spec.model.name, num_classes=info.num_classes, input_shape=tuple(info.input_shape), seed=0,
                        **dict(spec.model.options))
    state, _ = load_tensors(arts["state/final"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ConfigError(f"run {args.run_id}: its final state does not fit {spec.model.name} rebuilt from the "
                          f"spec: {str(e).splitlines()[0]}") from None
    model.eval()
    mask = Mask.load(masks[variant])
    pruned = _filter_entries(mask, model)
    if not any(pruned.values()):
        what = "prunes no filter" if pruned else "holds no filter (conv output-channel) entries"
        raise ConfigError(f"run {args.run_id}: the mask of variant {variant!r} {what}; it has no filter mask "
                          f"to export (weight-level masks zero weights but remove no channel)")
    exported = export_pruned(model, mask)
    report = exported.export_report
    save_tensors(out, exported.state_dict(), {"run_id": args.run_id, "variant": variant,
                                              "exported_from": spec.model.name})
    desc = {
        "format": "prunelab-export/1",
        "run_id": args.run_id, "variant": variant, "weights": out.name,
        "model": {"name": spec.model.name, "options": dict(spec.model.options), "num_classes": info.num_classes,
                  "input_shape": list(info.input_shape)},
        "filters_pruned": pruned,
        "parameters": {"before": sum(p.numel() for p in model.parameters()),
                       "after": sum(p.numel() for p in exported.parameters())},
        "shapes": {k: list(v.shape) for k, v in exported.state_dict().items()},
        "report": {n: vars(c) for n, c in report.items()},
        "load": "from prunelab.export import load_exported; model = load_exported(WEIGHTS_FILE)",
    }
    atomic_write_bytes(sidecar(out), (json.dumps(desc, indent=1) + "\n").encode())
    print(format_report(report))
    b, a = desc["parameters"]["before"], desc["parameters"]["after"]
    print(f"\nrun {args.run_id} ({variant}): parameters {b:,} -> {a:,} ({a / b:.1%}); "
          f"wrote {out} and {sidecar(out)}")
    return EXIT_OK


# parser ----------------------------------------------------------------------------------------------------
def _add_results(p) -> None:
    p.add_argument("--results", metavar="DIR", default=None,
                   help="results root (default: $PRUNELAB_RESULTS or ./prunelab-results)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunelab", description="Pruning and lottery-ticket experiments.",
                                epilog="exit codes: 0 ok, 1 a run failed, 2 bad input")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment or sweep from a YAML spec (cached, resumable)")
    r.add_argument("spec", nargs="+", help="spec files or recipe names from `prunelab list recipes` (one or more)")
    r.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a spec value, e.g. --set train.lr=0.01 --set seed=3 (value parsed as YAML)")
    _add_results(r)
    r.add_argument("--jobs", type=int, default=1, help="local worker processes (default: %(default)s)")
    r.add_argument("--executor", choices=["local", "ray"], default="local", help="default: %(default)s")
    r.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray instance)")
    r.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per run (default: the spec's, else cores // jobs)")
    r.add_argument("--quiet", action="store_true", help="no progress bars (log lines only)")
    r.add_argument("--dry-run", action="store_true", help="list the runs and whether they are cached; run nothing")
    r.set_defaults(func=_cmd_run)

    s = sub.add_parser("status", help="runs in the store and their status")
    _add_results(s)
    s.set_defaults(func=_cmd_status)

    for name, helptext, func in (("results", "results table (mean ± std over seeds); CSV/Parquet export",
                                  _cmd_results),
                                 ("report", "plots and a static HTML page of the results", _cmd_report)):
        q = sub.add_parser(name, help=helptext)
        _add_results(q)
        q.add_argument("--name", default=None, help="only the runs of this spec name")
        q.add_argument("--all", action="store_true", help="include unfinished runs' rounds")
        if name == "results":
            q.add_argument("--csv", metavar="PATH", help="write one row per (run, variant, round) as CSV")
            q.add_argument("--parquet", metavar="PATH", help="the same as Parquet (needs pyarrow)")
            q.add_argument("--table", action="store_true", help="print the table also when exporting")
            q.add_argument("--extra", action="store_true",
                           help="export also the procedure's own numbers (stability, flatness, epochs spent, ...)")
            q.add_argument("--metric", default="test_acc",
                           choices=["test_acc", "early_stop_test_acc", "val_acc", "test_loss", "val_loss"],
                           help="metric of the table (default: %(default)s)")
        else:
            q.add_argument("--paper", metavar="PAGE", default=None,
                           help="rebuild a paper page's tables and plots (docs/results/...) from the store; "
                                "pages: lth, dlt, sanity, stability, cs")
            q.add_argument("--out", metavar="DIR", default=None,
                           help="output directory (default: RESULTS/report; with --paper the page's directory)")
            q.add_argument("--title", default=None, help="page title (default: the spec names)")
        q.set_defaults(func=func)

    im = sub.add_parser("import", help="store rows computed elsewhere (JSON lines) as runs of a recipe")
    im.add_argument("spec", nargs="?", help="the recipe (or spec file) that describes how the rows were made")
    im.add_argument("rows", nargs="*", help="JSON-lines files, one row (variant, round, metrics...) per line")
    im.add_argument("--paper", metavar="PAGE", default=None,
                    help="import the rows committed beside a results page (lth, dlt, sanity, stability, cs)")
    im.add_argument("--match", action="append", metavar="SPEC_PATH=COLUMN",
                    help="which planned run a row belongs to, e.g. --match seed=seed (repeatable)")
    im.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec value, as for run")
    im.add_argument("--note", default="", help="where the rows came from (kept with the run)")
    _add_results(im)
    im.set_defaults(func=_cmd_import)

    ex = sub.add_parser("export", help="a stored run's filter-pruned model as a smaller dense model (safetensors)",
                        description="Remove the filters a stored run pruned (its final state and filter mask) "
                                    "and save the smaller dense model; prints what was removed per layer.",
                        epilog=EXPORT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ex.add_argument("run_id", metavar="RUN_ID", help="a finished run (`prunelab status` lists the ids)")
    ex.add_argument("--variant", default=None, help="which mask of the run (default: its only one)")
    ex.add_argument("--out", metavar="FILE", required=True, help="output .safetensors file (the .json sidecar goes next to it)")
    _add_results(ex)
    ex.set_defaults(func=_cmd_export)

    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("what", choices=["models", "datasets", "methods", "recipes", "scores"])
    ls.set_defaults(func=_cmd_list)

    d = sub.add_parser("demo", help="run a small IMP experiment with controls on MNIST-1D (offline, minutes)")
    d.add_argument("--out", default="prunelab-demo", help="output directory (default: %(default)s)")
    d.add_argument("--seeds", type=int, default=2, help="number of seeds (default: %(default)s)")
    d.add_argument("--rounds", type=int, default=6, help="pruning rounds (default: %(default)s)")
    d.add_argument("--epochs", type=float, default=30, help="epochs per round (default: %(default)s)")
    d.add_argument("--data", default=None, help="data root (default: $PRUNELAB_DATA or ~/.cache/prunelab/data)")
    d.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: %(default)s)")
    d.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PrunelabError as e:
        print(f"prunelab: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("prunelab: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
