"""Command line: ``prunelab demo``, ``prunelab list models|datasets|scores``."""
from __future__ import annotations

import argparse
import sys

from .errors import PrunelabError


def _cmd_list(args) -> int:
    if args.what == "models":
        from .models import list_models
        names = list_models()
    elif args.what == "datasets":
        from .data import list_datasets
        names = list_datasets()
    else:
        from .primitives import list_scores
        names = list_scores()
    print("\n".join(names))
    return 0


def _cmd_demo(args) -> int:
    import torch
    # The demo's MLP is too small to gain from intra-op threads; extra threads only contend for cores.
    torch.set_num_threads(args.threads)
    from .demo import run_demo, summarize
    df = run_demo(args.out, seeds=tuple(range(args.seeds)), rounds=args.rounds, epochs=args.epochs,
                  data_root=args.data, device=args.device, progress=not args.quiet)
    print("\nIMP on MNIST-1D (test accuracy %, mean ± std over seeds):")
    print(summarize(df).to_string())
    print(f"\nper-run rows: {args.out}/rounds.csv")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="prunelab", description="Pruning and lottery-ticket experiments.")
    sub = p.add_subparsers(dest="command", required=True)
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
    ls = sub.add_parser("list", help="list registered names")
    ls.add_argument("what", choices=["models", "datasets", "scores"])
    ls.set_defaults(func=_cmd_list)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PrunelabError as e:
        print(f"prunelab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
