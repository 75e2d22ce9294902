"""`python -m busadv ...`: the same workflows the dashboard starts, from a terminal."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

from busadv.progress import ProgressEvent


class ProgressPrinter:
    """A bar that redraws in place on a terminal, and plain epoch lines in logs."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last_line = ""
        self.last_draw = 0.0

    def __call__(self, event: ProgressEvent) -> None:
        in_batch = "batch" in event.message or event.message.startswith("evaluated")
        eta = f" | {_duration(event.eta_seconds)} left" if event.eta_seconds else ""
        if in_batch:
            if self.tty and time.monotonic() - self.last_draw > 0.1:
                filled = int(30 * event.fraction)
                self.stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {event.fraction:5.1%} "
                                  f"{event.message[-70:]}{eta}\033[K")
                self.stream.flush()
                self.last_draw = time.monotonic()
            return
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(f"[{event.fraction:5.1%}] {event.message}{eta}\n")
        self.stream.flush()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def _eps_list(text: str) -> list[float]:
    from busadv.attacks import parse_epsilon_list

    return parse_epsilon_list(text)


def _epsilon_arg(text: str) -> float:
    """argparse shows the message of an ArgumentTypeError, so the user learns why."""
    from busadv.attacks import parse_epsilon

    try:
        return parse_epsilon(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def print_rows(rows: Sequence[dict[str, Any]], stream=None) -> None:
    """A readable table of test conditions: accuracy and malignant cases missed."""
    stream = stream or sys.stdout
    from busadv.attacks import format_epsilon

    stream.write(f"{'condition':<34} {'accuracy':>9} {'malignant missed':>17}\n")
    for r in rows:
        label = "clean" if r["attack"] == "none" else f"{r['attack']} eps={format_epsilon(r['test_epsilon'])}"
        stream.write(f"{label:<34} {r['accuracy']:>9.3f} {r['malignant_missed']:>8}/{r['malignant_total']:<8}\n")


def _write_outputs(rows: list[dict], args: argparse.Namespace) -> None:
    from busadv.experiments import write_rows

    for path in filter(None, [getattr(args, "csv", None), getattr(args, "json", None)]):
        print(f"wrote {write_rows(rows, path)}")


def cmd_train(args: argparse.Namespace) -> int:
    from busadv.workflows import train_job

    config = {"arch": args.model, "mode": args.mode, "epsilon": args.epsilon, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "image_size": args.image_size,
              "adv_labels": args.adv_labels, "random_start": args.random_start, "clean_mix": args.clean_mix,
              "pretrained": args.pretrained, "device": args.device, "data": args.data,
              "test_epsilons": _eps_list(args.test_epsilons), "test_attacks": args.test_attacks.split(",")}
    result = train_job(config, progress=ProgressPrinter())
    print(f"data: {result['rows'][0]['data_source']}")
    print_rows(result["rows"])
    print(f"checkpoint: {result['checkpoint']}")
    _write_outputs(result["rows"], args)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from busadv.workflows import evaluate_job

    config = {"checkpoint": args.checkpoint, "attacks": args.attacks.split(","),
              "epsilons": _eps_list(args.epsilons), "pgd_steps": args.pgd_steps, "device": args.device}
    if args.data:
        config["data"] = args.data
    result = evaluate_job(config, progress=ProgressPrinter())
    print(f"test images: {result['test_images']} ({result['rows'][0]['n']} images, {result['rows'][0]['data_source']})")
    print_rows(result["rows"])
    _write_outputs(result["rows"], args)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from busadv.experiments import ExperimentConfig, study_preset, write_rows
    from busadv.workflows import experiment_job

    overrides: dict[str, Any] = {k: v for k, v in {
        "archs": args.models.split(",") if args.models else None,
        "modes": args.modes.split(",") if args.modes else None,
        "train_epsilons": _eps_list(args.train_epsilons) if args.train_epsilons else None,
        "seeds": [int(s) for s in args.seeds.split(",")] if args.seeds else None,
        "test_epsilons": _eps_list(args.test_epsilons) if args.test_epsilons else None,
        "test_attacks": args.test_attacks.split(",") if args.test_attacks else None,
        "epochs": args.epochs, "batch_size": args.batch_size, "data": args.data, "device": args.device,
        "adv_labels": args.adv_labels, "save_checkpoints": args.save_checkpoints or None,
    }.items() if v is not None}
    config = study_preset(**overrides) if args.preset == "study" else ExperimentConfig(**overrides)
    runs = config.runs()
    print(f"{len(runs)} runs: {', '.join(config.archs)} x {', '.join(config.modes)} x seeds {config.seeds}",
          file=sys.stderr)
    result = experiment_job(config.to_dict(), progress=ProgressPrinter())
    print(f"{'group':<44} {'accuracy mean +- std':>22} {'runs':>5}")
    for s in result["summary"]:
        name = (f"{s['arch']} {s['train_mode']}" + (f"@{s['train_epsilon']:g}" if s["train_mode"] != "standard" else "")
                + (" clean" if s["attack"] == "none" else f" {s['attack']}@{s['test_epsilon']:g}"))
        print(f"{name:<44} {s['accuracy_mean']:>12.3f} +- {s['accuracy_std']:.3f} {s['n_runs']:>5}")
    for note in result["warnings"]:
        print(f"WARNING: {note}")
    print(f"rows: {result['csv']}")
    if args.out:
        print(f"wrote {write_rows(result['rows'], args.out)}")
        summary_path = Path(args.out).with_name(Path(args.out).stem + "-summary" + Path(args.out).suffix)
        print(f"wrote {write_rows(result['summary'], summary_path)}")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from busadv.attacks import Attack, format_epsilon, parse_epsilon
    from busadv.checkpoints import load_checkpoint
    from busadv.data import decode_image, load_dataset
    from busadv.explorer import PerturbationProbe, to_uint8
    from busadv.workflows import test_split_for

    checkpoint = load_checkpoint(args.checkpoint)
    eps = parse_epsilon(args.epsilon)
    if args.image:
        pixels = decode_image(args.image, checkpoint.image_size)
        label, name = None, args.image
    else:
        test_set, _ = test_split_for(checkpoint, load_dataset(args.data, checkpoint.image_size))
        if not 0 <= args.index < len(test_set):
            raise ValueError(f"--index must be between 0 and {len(test_set) - 1}")
        pixels, label, name = test_set.images[args.index, 0].numpy(), int(test_set.labels[args.index]), test_set.names[args.index]
    probe = PerturbationProbe(checkpoint.model, pixels, label)
    classes = checkpoint.classes
    clean, adv = probe.probabilities(Attack.NONE, 0.0), probe.probabilities(args.attack, eps)
    print(f"image: {name}" + (f" (true class: {classes[label]})" if label is not None else " (class unknown)"))
    for title, p in (("clean", clean), (f"{Attack.coerce(args.attack).label} eps={format_epsilon(eps)}", adv)):
        print(f"{title:<40} " + "  ".join(f"{c} {v:.3f}" for c, v in zip(classes, p)) + f"  -> {classes[int(p.argmax())]}")
    flip = probe.smallest_flip(args.attack)
    print("smallest flipping epsilon: " + (format_epsilon(flip) if flip is not None else "none up to 0.5"))
    if args.out:
        Image.fromarray(np.concatenate([to_uint8(probe.x), to_uint8(probe.perturbed(args.attack, eps))], axis=1)).save(args.out)
        print(f"wrote {args.out} (original | perturbed)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from busadv.data import dataset_summary, load_dataset

    summary = dataset_summary(load_dataset(args.data, args.image_size))
    print(json.dumps(summary, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m busadv", description=(
        "Train, attack and evaluate breast-ultrasound classifiers under adversarial perturbations. "
        "Epsilons are in [0, 1] pixel scale and may be written as fractions: 8/255 = 0.031."))
    sub = parser.add_subparsers(dest="command", required=True)

    def data_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", help="BUSI folder (with benign/ malignant/ normal/, or one level up); "
                                      "default: $BUSADV_DATA, else simulated phantoms")
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")

    t = sub.add_parser("train", help="train one model, evaluate it and save a checkpoint")
    data_arg(t)
    t.add_argument("--model", default="simplecnn", choices=["simplecnn", "resnet50"])
    t.add_argument("--mode", default="standard", choices=["standard", "fgsm", "pgd"])
    t.add_argument("--epsilon", type=_epsilon_arg, default=0.0, help="training epsilon (fgsm/pgd)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--image-size", type=int, default=None, help="default: 128 (simplecnn), 224 (resnet50)")
    t.add_argument("--adv-labels", default="true", choices=["true", "predicted"],
                   help="labels FGSM training attacks; 'predicted' avoids label leaking")
    t.add_argument("--random-start", action="store_true", help="FGSM training from a random start (Wong et al.)")
    t.add_argument("--clean-mix", type=float, default=0.0, help="weight of clean loss in adversarial training")
    t.add_argument("--pretrained", action="store_true", help="ResNet50 from ImageNet weights in torchvision's cache")
    t.add_argument("--test-epsilons", default="2/255,8/255,0.05,0.2,0.5")
    t.add_argument("--test-attacks", default="fgsm", help="comma list of fgsm, fgsm-pred, pgd, noise")
    t.add_argument("--csv"), t.add_argument("--json")
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a checkpoint under attacks at several epsilons")
    data_arg(e)
    e.add_argument("checkpoint")
    e.add_argument("--attacks", default="fgsm,pgd,noise")
    e.add_argument("--epsilons", default="1/255,2/255,4/255,8/255,16/255,0.05,0.2,0.5")
    e.add_argument("--pgd-steps", type=int, default=10)
    e.add_argument("--csv"), e.add_argument("--json")
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("experiment", help="a grid of runs over models, modes, epsilons and seeds")
    data_arg(x)
    x.add_argument("--preset", choices=["study"], help="the seed study: simplecnn+resnet50, standard+fgsm at "
                                                       "0.5/0.2/0.05, 5 seeds, 10 epochs")
    x.add_argument("--models"), x.add_argument("--modes"), x.add_argument("--train-epsilons")
    x.add_argument("--seeds", help="comma list, e.g. 0,1,2")
    x.add_argument("--test-epsilons"), x.add_argument("--test-attacks")
    x.add_argument("--epochs", type=int), x.add_argument("--batch-size", type=int)
    x.add_argument("--adv-labels", choices=["true", "predicted"])
    x.add_argument("--save-checkpoints", action="store_true")
    x.add_argument("--out", help="rows as .csv or .json (a -summary file is written beside it)")
    x.set_defaults(func=cmd_experiment)

    a = sub.add_parser("attack", help="attack one image with a checkpoint and show the probabilities")
    data_arg(a)
    a.add_argument("checkpoint")
    a.add_argument("--image", help="an ultrasound image file; default: a test image by --index")
    a.add_argument("--index", type=int, default=0)
    a.add_argument("--attack", default="fgsm", choices=["fgsm", "fgsm-pred", "noise"])
    a.add_argument("--epsilon", default="8/255")
    a.add_argument("--out", help="write original|perturbed side by side as PNG")
    a.set_defaults(func=cmd_attack)

    d = sub.add_parser("data", help="check a dataset folder: counts, duplicates, label conflicts, skipped files")
    data_arg(d)
    d.add_argument("--image-size", type=int, default=128)
    d.set_defaults(func=cmd_data)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Errors users can fix come out as one line, not a traceback."""
    from busadv.checkpoints import CheckpointError
    from busadv.data import DatasetError
    from busadv.models import PretrainedWeightsUnavailable

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        try:
            return args.func(args)
        except (DatasetError, CheckpointError, PretrainedWeightsUnavailable, ValueError, FileNotFoundError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
