"""``python -m export``: train, build (calibrate, export, quantise, sign, card) and wrap models."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from export.data import SHARED_DATA, WORK

#: Recipes the CLI trains: the task ids, plus the from-scratch ones kept for comparison.
RECIPE_NAMES = (
    "fundus-dr", "fundus-dr-b", "fundus-dr-2.1", "fundus-dr-2.2", "fundus-dr-2.3", "fundus-dr-2.4",
    "fundus-dr-3.0", "fundus-dr-3.1", "fundus-dr-3.2", "fundus-dr-3.3",
    "fundus-dr-3.4", "fundus-dr-3.5", "fundus-dr-3.6", "fundus-dr-3.7",
    "cxr-adult", "cxr-pneumonia", "cxr-pneumonia-1.1", "fundus-dr-1.1",
)


def log_line(text: str) -> None:
    """A time-stamped line on stderr (the progress bar shares the terminal)."""
    print(time.strftime("%H:%M:%S"), text, file=sys.stderr, flush=True)


def command_train(args: argparse.Namespace) -> int:
    """Train a reference model from ../shared/data, then build its bundle."""
    from export.data import load_real
    from export.recipes import RECIPES
    from export.train import member_dir, train

    recipe = RECIPES[args.task]
    fitting = ("train", "calibration")  # the test split is for the card alone, never opened here
    data = load_real(
        recipe.task,
        recipe.spec,
        recipe.seed,
        data=Path(args.data),
        cache=Path(args.work),
        fractions=recipe.fractions,
        splits=fitting,
    )
    log_line(
        f"{args.task}: {len(data.images)} images, splits by patient "
        + str({s: int((data.split == s).sum()) for s in ("train", "calibration", "test")})
    )
    budget = args.time_budget_min * 60 if args.time_budget_min else None
    if recipe.backbone:
        from export.transfer import fine_tune, transfer_dir

        raw = None
        if recipe.film_shifts:  # the films before CLAHE, to draw film-level shifts from
            from export.film_shift import raw_spec

            spec = raw_spec(recipe.spec)
            films = load_real(
                recipe.task, spec, recipe.seed, Path(args.data), Path(args.work), recipe.fractions, fitting
            )
            raw = films.part("train").images
        fine_tune(
            recipe,
            data,
            transfer_dir(Path(args.work), args.task),
            device=args.device,
            resume=not args.fresh,
            log=log_line,
            budget_s=budget,
            threads=args.threads,
            raw=raw,
        )
        return 0 if args.no_build else command_build(args)
    if not 0 <= args.member < recipe.members:
        raise SystemExit(f"{args.task} has {recipe.members} member(s): --member 0..{recipe.members - 1}")
    train(
        recipe,
        data,
        member_dir(Path(args.work), recipe.task, args.member),
        resume=not args.fresh,
        log=log_line,
        budget_s=budget,
        extra_epochs=args.more_epochs,
        extra_lr=args.more_lr,
        member=args.member,
        threads=args.threads,
    )
    if args.no_build or args.member < recipe.members - 1:
        return 0
    return command_build(args)


def command_build(args: argparse.Namespace) -> int:
    """Calibrate, export, check parity, quantise, measure and sign a trained model's bundle."""
    from export.build import build_from_checkpoint

    build_from_checkpoint(args.task, Path(args.data), Path(args.work), Path(args.out), log=log_line)
    return 0


def command_keygen(args: argparse.Namespace) -> int:
    """Generate an Ed25519 signing key (outside the repository) and its trusted public key."""
    from export.signing import generate_key

    generate_key(Path(args.private), Path(args.public))
    log_line(f"private key {args.private} (keep it out of the repository); public key {args.public}")
    return 0


def command_wrap(args: argparse.Namespace) -> int:
    """Wrap a third-party ONNX model into a signed bundle from a TOML description."""
    from export.signing import KEY_ENV, load_private_key
    from export.wrap import wrap

    key_path = Path(args.key or __import__("os").environ.get(KEY_ENV, ""))
    folder = wrap(
        Path(args.description),
        Path(args.out),
        load_private_key(key_path),
        key_path.stem,
        model=Path(args.model) if args.model else None,
    )
    log_line(f"signed bundle written: {folder}")
    return 0


def command_tensorrt(args: argparse.Namespace) -> int:
    """On a GPU device: build, cache and parity-check TensorRT engines for a bundle."""
    import json

    import numpy as np

    from export.tensorrt import build_engines

    sample = np.load(args.images).astype(np.float32)
    report = build_engines(Path(args.bundle), Path(args.trusted_keys), Path(args.cache), sample)
    print(json.dumps(report, indent=2))
    return 0


def command_reference(args: argparse.Namespace) -> int:
    """Add the input reference (drift alarms) to a shipped bundle as a new, re-signed patch version."""
    from export.reference import add_reference

    folder = add_reference(Path(args.bundle), Path(args.data), Path(args.out or Path(args.bundle).parent))
    log_line(f"signed bundle written: {folder}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one verb."""
    parser = argparse.ArgumentParser(prog="python -m export", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)
    for name, handler in (("train", command_train), ("build", command_build)):
        sub = verbs.add_parser(name, help=handler.__doc__)
        sub.add_argument("task", choices=sorted(RECIPE_NAMES))
        sub.add_argument("--data", default=str(SHARED_DATA), help="the shared data folder")
        sub.add_argument("--work", default=str(WORK), help="caches and checkpoints")
        sub.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "models"))
        sub.set_defaults(handler=handler)
        if name == "train":
            sub.add_argument("--fresh", action="store_true", help="ignore checkpoints, start again")
            sub.add_argument(
                "--device",
                default="cpu",
                help="cpu, or cuda on a GPU (transfer recipes; scripts/train-gpu.sh runs several at once)",
            )
            sub.add_argument("--no-build", action="store_true", help="train only")
            sub.add_argument(
                "--time-budget-min",
                type=float,
                default=0.0,
                help="end the (compressed) learning-rate schedule within this many minutes",
            )
            sub.add_argument(
                "--more-epochs",
                type=int,
                default=0,
                help="continue a finished run with a second cosine cycle of this many epochs",
            )
            sub.add_argument("--more-lr", type=float, default=5e-4, help="peak LR of that second cycle")
            sub.add_argument(
                "--member", type=int, default=0, help="which member of the recipe's ensemble to train"
            )
            sub.add_argument(
                "--threads",
                type=int,
                default=0,
                help="intra-op threads (default: 1 or 2, whichever is faster)",
            )
    keygen = verbs.add_parser("keygen", help=command_keygen.__doc__)
    keygen.add_argument("private", help="PEM file to create, e.g. /root/.kiosk-keys/kiosk-dev-2026.pem")
    keygen.add_argument("public", help="public key file, e.g. models/trusted_keys/kiosk-dev-2026.pub")
    keygen.set_defaults(handler=command_keygen)
    wrap = verbs.add_parser("wrap", help=command_wrap.__doc__)
    wrap.add_argument("description", help="TOML description (see export/examples/third-party-cxr.toml)")
    wrap.add_argument("--model", help="the ONNX file (default: 'model' in the description)")
    wrap.add_argument("--out", required=True, help="folder to write the bundle into")
    wrap.add_argument("--key", help="signing key PEM (default: $KIOSK_SIGNING_KEY)")
    wrap.set_defaults(handler=command_wrap)
    reference = verbs.add_parser("reference", help=command_reference.__doc__)
    reference.add_argument("bundle", help="the bundle folder, e.g. models/cxr-pneumonia-1.1.0")
    reference.add_argument("--data", default=str(SHARED_DATA), help="the shared data folder")
    reference.add_argument("--out", help="folder to write the patch version into (default: beside it)")
    reference.set_defaults(handler=command_reference)
    trt = verbs.add_parser("tensorrt", help=command_tensorrt.__doc__)
    trt.add_argument("bundle")
    trt.add_argument("--trusted-keys", default="models/trusted_keys")
    trt.add_argument("--cache", default="data/engines", help="the kiosk's KIOSK_ENGINE_CACHE_DIR")
    trt.add_argument("--images", required=True, help=".npy of preprocessed real images [N, C, H, W]")
    trt.set_defaults(handler=command_tensorrt)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    raise SystemExit(main())
