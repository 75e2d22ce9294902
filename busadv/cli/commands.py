"""`python -m busadv train | evaluate | experiment | attack | data`: the workflows the dashboard starts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from busadv.cli.output import ProgressPrinter, print_diagnosis_texts, print_rows, print_summary
from busadv.results import ResultRow, row_from_dict, summarize, write_rows


def _rows(result: dict[str, Any]) -> list[ResultRow]:
    return [row_from_dict(r) for r in result["rows"]]


def _report(result: dict[str, Any], args: argparse.Namespace) -> list[ResultRow]:
    """Print a workflow's rows and diagnoses; write the files the user asked for."""
    rows = _rows(result)
    print_rows(rows)
    print_diagnosis_texts(result["diagnoses"])
    for path in filter(None, [getattr(args, "csv", None), getattr(args, "json", None)]):
        print(f"wrote {write_rows(rows, path)}")
    if result.get("results_file"):
        print(f"results store: {result['results_file']}")
    return rows


def cmd_train(args: argparse.Namespace) -> int:
    from busadv.experiments import train_job

    config = {"arch": args.model, "mode": args.mode, "epsilon": args.epsilon, "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed, "image_size": args.image_size,
              "adv_labels": args.adv_labels, "random_start": args.random_start, "clean_mix": args.clean_mix,
              "warmup_epochs": args.warmup_epochs, "class_balance": args.class_balance, "trades_beta": args.trades_beta,
              "pgd_steps": args.pgd_steps, "pretrained": args.pretrained,
              "device": args.device, "data": args.data, "test_epsilons": args.test_epsilons,
              "test_attacks": args.test_attacks}
    if args.split_policy:
        config["split_policy"] = args.split_policy
    result = train_job(config, progress=ProgressPrinter())
    print(f"data: {result['rows'][0]['data_source']}")
    _report(result, args)
    print(f"checkpoint: {result['checkpoint']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from busadv.experiments import evaluate_job

    config: dict[str, Any] = {"checkpoint": args.checkpoint, "attacks": args.attacks, "epsilons": args.epsilons,
                              "pgd_steps": args.pgd_steps, "device": args.device}
    if args.data:
        config["data"] = args.data
    result = evaluate_job(config, progress=ProgressPrinter())
    first = result["rows"][0]
    print(f"test images: {result['test_images']} ({first['n']} images, {first['data_source']})")
    _report(result, args)
    return 0


def cmd_experiment(args: argparse.Namespace) -> int:
    from busadv.experiments import PRESETS, ExperimentConfig, experiment_job

    overrides: dict[str, Any] = {k: v for k, v in {
        "archs": args.models, "modes": args.modes, "train_epsilons": args.train_epsilons, "seeds": args.seeds,
        "test_epsilons": args.test_epsilons, "test_attacks": args.test_attacks, "epochs": args.epochs,
        "batch_size": args.batch_size, "data": args.data, "device": args.device, "adv_labels": args.adv_labels,
        "random_start": args.random_start, "clean_mix": args.clean_mix, "split_policy": args.split_policy,
        "warmup_epochs": args.warmup_epochs, "class_balance": args.class_balance, "trades_beta": args.trades_beta,
        "save_checkpoints": args.save_checkpoints or None,
    }.items() if v is not None}
    config = PRESETS[args.preset](**overrides) if args.preset else ExperimentConfig(**overrides)
    runs = config.runs()
    print(f"{len(runs)} runs: {', '.join(config.archs)} x {', '.join(config.modes)} x seeds {config.seeds}",
          file=sys.stderr)
    result = experiment_job(config.to_dict(), progress=ProgressPrinter())
    rows = _rows(result)
    print_summary(summarize(rows))
    print_diagnosis_texts(result["diagnoses"])
    print(f"results store: {result['results_file']}")
    if args.out:
        print(f"wrote {write_rows(rows, args.out)}")
        out = Path(args.out)
        summary_path = out.with_name(out.stem + "-summary" + out.suffix)
        print(f"wrote {write_rows(result['summary'], summary_path)}")
    return 0


def cmd_attack(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from busadv.attacks import attack_label, format_epsilon
    from busadv.data import decode_image, load_dataset
    from busadv.experiments import test_split_for
    from busadv.explorer import PerturbationProbe, to_uint8
    from busadv.models.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(args.checkpoint)
    eps = args.epsilon
    if args.image:
        pixels = decode_image(args.image, checkpoint.image_size)
        label, name = None, args.image
    else:
        test_set, _ = test_split_for(checkpoint, load_dataset(args.data, checkpoint.image_size))
        if not 0 <= args.index < len(test_set):
            raise ValueError(f"--index must be between 0 and {len(test_set) - 1}")
        pixels = test_set.images[args.index, 0].numpy()
        label, name = int(test_set.labels[args.index]), test_set.names[args.index]
    probe = PerturbationProbe(checkpoint.require_model(), pixels, label)
    classes = checkpoint.classes
    clean, adv = probe.probabilities("none", 0.0), probe.probabilities(args.attack, eps)
    print(f"image: {name}" + (f" (true class: {classes[label]})" if label is not None else " (class unknown)"))
    for title, p in (("clean", clean), (f"{attack_label(args.attack)} eps={format_epsilon(eps)}", adv)):
        shares = "  ".join(f"{c} {v:.3f}" for c, v in zip(classes, p, strict=True))
        print(f"{title:<40} {shares}  -> {classes[int(p.argmax())]}")
    flip = probe.smallest_flip(args.attack)
    print("smallest flipping epsilon: " + (format_epsilon(flip) if flip is not None else "none up to 0.5"))
    if args.out:
        pair = np.concatenate([to_uint8(probe.x), to_uint8(probe.perturbed(args.attack, eps))], axis=1)
        Image.fromarray(pair).save(args.out)
        print(f"wrote {args.out} (original | perturbed)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from busadv.data import dataset_summary, load_dataset

    print(json.dumps(dataset_summary(load_dataset(args.data, args.image_size)), indent=1))
    return 0
