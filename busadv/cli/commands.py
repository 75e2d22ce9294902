"""`python -m busadv train | evaluate | experiment | attack | data`: the workflows the dashboard starts."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from busadv.cli import arguments
from busadv.cli.output import ProgressPrinter, print_diagnosis_texts, print_rows, print_summary
from busadv.results import ResultRow, row_from_dict, summarize, write_rows

if TYPE_CHECKING:
    from busadv.experiments import ExperimentConfig


def _rows(result: dict[str, Any]) -> list[ResultRow]:
    return [row_from_dict(r) for r in result["rows"]]


def _report(result: dict[str, Any], args: argparse.Namespace) -> list[ResultRow]:
    """Print a workflow's rows and diagnoses; write the files the user asked for."""
    rows = _rows(result)
    print_rows(rows)
    print_diagnosis_texts(result["diagnoses"])
    arguments.write_files(rows, getattr(args, "csv", None), getattr(args, "json", None))
    if result.get("results_file"):
        print(f"results store: {result['results_file']}")
    return rows


def cmd_train(args: argparse.Namespace) -> int:
    from busadv.experiments import train_job
    from busadv.results import kept_weights
    from busadv.training.config import recipe_training

    base: dict[str, Any] = recipe_training(args.recipe)
    config: dict[str, Any] = {"arch": args.model, "mode": args.mode, "epsilon": args.epsilon,
              "batch_size": args.batch_size, "seed": args.seed, "image_size": args.image_size,
              "adv_labels": args.adv_labels, "random_start": args.random_start, "clean_mix": args.clean_mix,
              "warmup_epochs": args.warmup_epochs, "class_balance": args.class_balance, "trades_beta": args.trades_beta,
              "pgd_steps": args.pgd_steps, "pretrained": args.pretrained,
              "device": args.device, "data": args.data, "test_epsilons": args.test_epsilons,
              "test_attacks": args.test_attacks}
    if args.split_policy:
        config["split_policy"] = args.split_policy
    # A setting left out takes the recipe's value (the mode's default where the recipe has none).
    config = {**base, **{k: v for k, v in config.items() if not (v is None and k in base)},
              **_given(args, LEVER_OPTIONS + ("epochs", "lr", "monitor_images"))}
    result = train_job(config, progress=ProgressPrinter())
    print(f"data: {result['rows'][0]['data_source']}")
    print(f"weights tested: {kept_weights(result['rows'][0])}")
    _report(result, args)
    print(f"checkpoint: {result['checkpoint']}")
    return 0


LEVER_OPTIONS = ("augment", "optimizer", "weight_decay", "schedule", "ema_decay", "val_fraction", "select", "patience",
                 "refit", "epochs_chosen_on", "epochs_chosen_by", "levers_chosen_among", "critical_weight")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    """The options a user typed (argparse leaves the others None): they override a recipe's values."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


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


def grid_estimate(config: ExperimentConfig) -> str:
    """The grid's rough time in words before it starts (hours of AutoAttack should not be a surprise); '' when
    the data folder cannot be counted (the grid itself then says why)."""
    from busadv.data import DatasetError, class_counts
    from busadv.experiments import grid_estimate, measured_rates

    try:
        images = sum(class_counts(config.data).values())
    except DatasetError:
        return ""
    return grid_estimate(config, images, *measured_rates())


def _choose_among(given: list[str] | None) -> dict[str, list[Any]] | None:
    """--choose-among, repeated once per setting, read by the parser the Jobs form uses."""
    from busadv.experiments.config import parse_choose_among

    try:
        return parse_choose_among(given) if given else None
    except ValueError as exc:
        raise ValueError(f"--choose-among: {exc}") from None


def grid_config(args: argparse.Namespace) -> ExperimentConfig:
    """The grid `experiment` runs: its preset (or busadv's best recipe) with what the command line says."""
    from busadv.experiments import PRESETS, ExperimentConfig

    overrides: dict[str, Any] = {k: v for k, v in {
        "archs": args.models, "modes": args.modes, "train_epsilons": args.train_epsilons, "seeds": args.seeds,
        "test_epsilons": args.test_epsilons, "test_attacks": args.test_attacks, "epochs": args.epochs,
        "batch_size": args.batch_size, "image_sizes": args.image_sizes, "data": args.data, "device": args.device,
        "adv_labels": args.adv_labels,
        "random_start": args.random_start, "clean_mix": args.clean_mix, "split_policy": args.split_policy,
        "warmup_epochs": args.warmup_epochs, "class_balance": args.class_balance, "trades_beta": args.trades_beta,
        "save_checkpoints": args.save_checkpoints or None, **_given(args, LEVER_OPTIONS + ("lr", "monitor_images")),
        "backend": args.backend, "address": args.address, "workers": args.workers,
        "choose_among": _choose_among(args.choose_among),
    }.items() if v is not None}
    return PRESETS[args.preset](**overrides) if args.preset else ExperimentConfig(**overrides)


def cmd_experiment(args: argparse.Namespace) -> int:
    from busadv.cli.frontier import print_tradeoffs
    from busadv.experiments import experiment_job
    from busadv.results.tradeoff import epsilon_tradeoffs
    from busadv.training import format_seed_list

    config = grid_config(args)
    runs = config.runs() + (config.choosing_runs() if config.epochs_chosen_on else [])
    where = f"Ray at {config.address}" if config.address else config.backend
    print(f"{len(runs)} runs: {', '.join(config.archs)} x {', '.join(config.modes)} x seeds {config.seeds}"
          + (f" (their epoch counts chosen first on validation of seeds {config.epochs_chosen_on}"
             + (f", with {config.chosen_among_text()} chosen among" if config.choose_among else "") + ")"
             if config.epochs_chosen_on else "")
          + f", on {where}" + (f" ({config.workers} at once)" if config.workers else ""), file=sys.stderr)
    estimate = grid_estimate(config)
    if estimate:
        print(f"time: {estimate}, one run after another", file=sys.stderr)
    result = experiment_job(config.to_dict(), progress=ProgressPrinter())
    rows = _rows(result)
    choosing_seeds = set(config.epoch_chooser().seeds) if config.epochs_chosen_on else set()
    choosing = [r for r in rows if r.seed in choosing_seeds]
    if choosing:  # the same models and modes as the grid's: said apart, or two "standard training" lines puzzle
        print(f"the runs that chose the epoch counts (seeds {config.epochs_chosen_on}, {config.epochs} epochs with a "
              "validation split; tested clean only):")
        print_summary(summarize(choosing))
        print(f"the grid's runs (seeds {format_seed_list(config.seeds)}, each trained for its chosen epoch count on "
              "every training image):")
    print_summary(summarize([r for r in rows if r.seed not in choosing_seeds]))
    print_diagnosis_texts(result["diagnoses"])
    for choice in result.get("epoch_choices", []):
        if choice.get("levers_text"):
            print(f"values chosen on seeds {choice['chosen_on']}: {choice['levers_text']}")
        print(f"epoch count chosen on seeds {choice['chosen_on']}: {choice['text']}")
    print_tradeoffs(epsilon_tradeoffs(rows))  # the study's question, wherever the grid holds a frontier
    print(f"results store: {result['results_file']}")
    if args.out:
        print(f"wrote {write_rows(rows, args.out)}")
        out = Path(args.out)
        summary_path = out.with_name(out.stem + "-summary" + out.suffix)
        print(f"wrote {write_rows(result['summary'], summary_path)}")
    missing = len(runs) - len({row.run for row in rows})
    if missing:  # the progress output above names each failed run and its error
        print(f"error: {missing} of {len(runs)} runs failed twice and have no rows", file=sys.stderr)
        return 1
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


def register(sub: argparse._SubParsersAction) -> None:
    from busadv.attacks import ATTACKS, explorer_attacks
    from busadv.data.split import SPLIT_POLICIES
    from busadv.experiments.backends import BACKENDS
    from busadv.models import MODELS
    from busadv.training import CLASS_BALANCE, LABEL_SOURCES, MODES
    from busadv.training.config import (
        AUGMENTATIONS,
        BEST_LEVERS,
        CHOOSABLE_LEVERS,
        CHOOSING_SELECTIONS,
        OPTIMIZERS,
        SCHEDULES,
        SELECTIONS,
        TRAINING_RECIPES,
    )

    attack_names = ", ".join(ATTACKS.names())
    attacks, epsilons, epsilon = arguments.attack_list, arguments.epsilon_list, arguments.epsilon
    seeds, models, modes = arguments.seed_list, arguments.model_list, arguments.mode_list

    def recipe_args(p: argparse.ArgumentParser) -> None:
        """Recipe settings; left out, each takes the training mode's default (class balance: the recipe's)."""
        p.add_argument("--adv-labels", choices=LABEL_SOURCES,
                       help="labels adversarial training attacks; 'predicted' avoids label leaking")
        p.add_argument("--random-start", action=argparse.BooleanOptionalAction, default=None,
                       help="adversarial examples from a random start (Wong et al. 2020)")
        p.add_argument("--clean-mix", type=float, help="weight of the clean loss beside the adversarial loss, [0, 1)")
        p.add_argument("--warmup-epochs", type=int, help="ramp the training epsilon up from 0 over this many epochs")
        p.add_argument("--class-balance", choices=list(CLASS_BALANCE),
                       help="; ".join(f"{k}: {v}" for k, v in CLASS_BALANCE.items())
                       + " (default: the recipe's, loss for busadv's best and none for the study's)")
        p.add_argument("--trades-beta", type=float, help="weight of TRADES' robustness term (trades mode)")
        p.add_argument("--critical-weight", "--malignant-weight", type=arguments.critical_weight, metavar="W",
                       dest="critical_weight",
                       help="the malignant class's loss weight times this, on top of --class-balance: a missed "
                            "cancer costs more than a false alarm (default 1: as the balance sets it)")
        p.add_argument("--split-policy", choices=list(SPLIT_POLICIES),
                       help="grouped: copies of an image stay on one side (default); random: the study's split")
        p.add_argument("--augment", choices=list(AUGMENTATIONS),
                       help="; ".join(f"{k}: {v}" for k, v in AUGMENTATIONS.items()))
        p.add_argument("--optimizer", choices=list(OPTIMIZERS))
        p.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay (Adam: L2)")
        p.add_argument("--schedule", choices=list(SCHEDULES),
                       help="; ".join(f"{k}: {v}" for k, v in SCHEDULES.items()))
        p.add_argument("--ema-decay", type=float, help="average of the weights, evaluated and saved (0: off)")
        p.add_argument("--val-fraction", type=float,
                       help="share of the training side held out to choose the epoch (0: none, as in the study)")
        p.add_argument("--select", choices=list(SELECTIONS),
                       help="; ".join(f"{k}: {v}" for k, v in SELECTIONS.items())
                       + f" (default {BEST_LEVERS['select']}; the study's recipe: last)")
        p.add_argument("--patience", type=int, help="stop after this many epochs without a better validation score")
        p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                       help="after validation has chosen the epoch, train again on every training image (validation "
                            f"split included) for that many epochs and keep the last (default {BEST_LEVERS['refit']})")
        p.add_argument("--epochs-chosen-on", type=arguments.seed_text, metavar="SEEDS",
                       help="seeds (e.g. 5-9) whose runs' validation, pooled, chooses the epoch count, so that the "
                            "seeds tested choose nothing; experiment: trains them first (the recipe with its "
                            "validation split), then trains its own seeds that many epochs on every training image "
                            "and keeps the last; train: records which seeds chose --epochs (see `busadv epochs`)")
        p.add_argument("--epochs-chosen-by", choices=list(CHOOSING_SELECTIONS), metavar="SELECT",
                       help="train, with --epochs-chosen-on: the select whose validation scores chose --epochs "
                            f"({', '.join(CHOOSING_SELECTIONS)}; `busadv epochs` says which); a grid records its "
                            "own --select")
        p.add_argument("--levers-chosen-among", metavar="TEXT",
                       help="train, with --epochs-chosen-on: the values the choosing seeds' validation chose this "
                            "run's among (e.g. 'critical_weight 1, 1.5, 2'; `busadv epochs` prints it); a grid "
                            "records its own --choose-among")
        p.add_argument("--lr", type=float, help="learning rate (the peak of a schedule)")

    t = sub.add_parser("train", help="train one model, evaluate it and save a checkpoint")
    arguments.data_arg(t)
    t.add_argument("--model", default="simplecnn", choices=MODELS.names())
    t.add_argument("--mode", default="standard", choices=MODES.names(),
                   help="; ".join(f"{m.name}: {m.description}" for m in MODES))
    t.add_argument("--epsilon", type=epsilon, default=0.0, help="training epsilon (adversarial modes), e.g. 8/255")
    t.add_argument("--recipe", choices=TRAINING_RECIPES, default="best",
                   help="best: busadv's measured recipe (augmentation, AdamW one-cycle, weight average, the epoch "
                        "chosen on a validation split, 40 epochs); study: the study's (Adam 1e-3, 10 epochs, "
                        "nothing added). Options given beside it override it")
    t.add_argument("--epochs", type=int, help="default: 40 (best recipe) or 10 (study recipe)")
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--image-size", type=int, default=None,
                   help="default: " + ", ".join(f"{m.name} {m.default_image_size}" for m in MODELS))
    recipe_args(t)
    t.add_argument("--pgd-steps", type=int, default=7, help="PGD steps of PGD training and of the per-epoch watch")
    arguments.watch_images_arg(t)
    t.add_argument("--pretrained", action="store_true", help="ImageNet weights from torchvision's cache (resnet50)")
    t.add_argument("--test-epsilons", type=epsilons, default="2/255,8/255,0.05,0.2,0.5")
    t.add_argument("--test-attacks", type=attacks, default="fgsm,pgd", help=f"comma list of {attack_names}")
    t.add_argument("--csv", type=arguments.rows_file), t.add_argument("--json", type=arguments.rows_file)
    t.set_defaults(func=cmd_train)

    e = arguments.checkpoint_command(sub, "evaluate", "evaluate a checkpoint under attacks at several epsilons")
    e.add_argument("--attacks", type=attacks, default="fgsm,pgd,noise", help=f"comma list of {attack_names}")
    e.add_argument("--epsilons", type=epsilons, default="1/255,2/255,4/255,8/255,16/255,0.05,0.2,0.5")
    e.add_argument("--pgd-steps", type=int, default=10)
    e.add_argument("--csv", type=arguments.rows_file), e.add_argument("--json", type=arguments.rows_file)
    e.set_defaults(func=cmd_evaluate)

    x = sub.add_parser("experiment", help="a grid of runs over models, modes, epsilons and seeds")
    arguments.data_arg(x)
    x.add_argument("--preset", choices=["study", "frontier"],
                   help="study: the seed study (simplecnn+resnet50, standard+fgsm at 0.5/0.2/0.05, 5 seeds, the "
                        "study's 10-epoch recipe); frontier: busadv's robust recipe at training epsilons 0, 1, 2, 4 "
                        "and 8/255 over 5 seeds, tested clean and under AutoAttack and PGD at 2, 4 and 8/255. "
                        "Options given beside a preset narrow or override it")
    x.add_argument("--models", type=models, help=f"comma list of {', '.join(MODELS.names())}")
    x.add_argument("--modes", type=modes, help=f"comma list of {', '.join(MODES.names())} (see train --help)")
    x.add_argument("--train-epsilons", type=epsilons)
    x.add_argument("--seeds", type=seeds, help="comma list or range, e.g. 0,1,2 or 0-4")
    x.add_argument("--test-epsilons", type=epsilons)
    x.add_argument("--test-attacks", type=attacks, help=f"comma list of {attack_names}")
    x.add_argument("--epochs", type=int), x.add_argument("--batch-size", type=int)
    x.add_argument("--image-sizes", type=arguments.image_sizes,
                   help="per model, e.g. resnet50=64 (default: each model's own, SimpleCNN 128, ResNet50 224)")
    recipe_args(x)
    arguments.watch_images_arg(x)
    x.add_argument("--choose-among", action="append", metavar="SETTING=V1,V2",
                   help="with --epochs-chosen-on: values of a training setting (e.g. critical_weight=1,1.5,2) the "
                        "choosing seeds try, each for every model, mode and training ε; their pooled validation "
                        "chooses the value with the epoch count, and the grid's seeds train with the winner. "
                        "Repeat for several settings (every combination is tried). Settings: "
                        + ", ".join(CHOOSABLE_LEVERS))
    x.add_argument("--save-checkpoints", action="store_true")
    x.add_argument("--backend", choices=BACKENDS.names(),
                   help="; ".join(f"{b.name}: {b.description}" for b in BACKENDS) + " (default: local)")
    x.add_argument("--address", help="ray: a running cluster's head, host:port or ray://host:port "
                                     "(default: $RAY_ADDRESS, else Ray starts on this machine)")
    x.add_argument("--workers", type=int, help="runs at once (default: as many as the cores and memory hold; "
                                               "1: one after another)")
    x.add_argument("--out", type=arguments.rows_file,
                   help="rows as .csv or .json (a -summary file is written beside it)")
    x.set_defaults(func=cmd_experiment)

    a = arguments.checkpoint_command(sub, "attack", "attack one image with a checkpoint and show the probabilities")
    a.add_argument("--image", help="an ultrasound image file; default: a test image by --index")
    a.add_argument("--index", type=int, default=0)
    a.add_argument("--attack", default="fgsm", choices=[s.name for s in explorer_attacks()])
    a.add_argument("--epsilon", type=epsilon, default="8/255")
    a.add_argument("--out", type=arguments.output_file(".png"), help="write original|perturbed side by side as PNG")
    a.set_defaults(func=cmd_attack)

    d = sub.add_parser("data", help="check a dataset folder: counts, duplicates, label conflicts, skipped files")
    arguments.data_arg(d)
    d.add_argument("--image-size", type=int, default=128)
    d.set_defaults(func=cmd_data)



