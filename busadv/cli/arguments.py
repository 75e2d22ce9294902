"""Argument types and options shared by the command groups: parsed before any work, errors naming the option."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any


def typed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argparse type whose ValueError message reaches the user (argparse prefixes the option's name)."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return convert


def _names(registry_path: str, option: str) -> Callable[[str], Any]:
    def parse(text: str) -> list[str]:
        import importlib

        from busadv.registry import parse_name_list

        module, _, attribute = registry_path.rpartition(".")
        return parse_name_list(text, getattr(importlib.import_module(module), attribute), option)
    return typed(parse)


def _epsilons(text: str) -> list[float]:
    from busadv.attacks import parse_epsilon_list

    return parse_epsilon_list(text, "epsilons")


def _epsilon(text: str) -> float:
    from busadv.attacks import parse_epsilon

    return parse_epsilon(text)


def _seeds(text: str) -> list[int]:
    from busadv.training import parse_seed_list

    return parse_seed_list(text)


def _seed_text(text: str) -> str:
    """Seeds as a recipe records them ('5-9'), checked at parse time."""
    from busadv.training import format_seed_list, parse_seed_list

    seeds = parse_seed_list(text)
    if not seeds:
        raise ValueError("names no seed; give seeds like 5-9")
    return format_seed_list(seeds)


def _watch_images(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number of test images, e.g. 64 (0: none), got {text[:40]!r}") from None
    if not 0 <= count <= 100_000:
        raise ValueError(f"must be from 0 to 100000 test images, got {count}")
    return count


def _critical_weight(text: str) -> float:
    from busadv.training.config import MAX_CRITICAL_WEIGHT, MIN_CRITICAL_WEIGHT

    try:
        weight = float(text)
    except ValueError:
        raise ValueError(f"must be a number, e.g. 2 (1: as --class-balance sets it), got {text[:40]!r}") from None
    if not MIN_CRITICAL_WEIGHT <= weight <= MAX_CRITICAL_WEIGHT:  # NaN fails this too
        raise ValueError(f"must be from {MIN_CRITICAL_WEIGHT:g} to {MAX_CRITICAL_WEIGHT:g}, got {text[:40]}")
    return weight


def watch_images_arg(p: argparse.ArgumentParser) -> None:
    """The per-epoch test watch of runs without a validation split (not a recipe setting: it never chooses)."""
    p.add_argument("--watch-images", dest="monitor_images", type=watch_images, metavar="N",
                   help="test images (stratified) attacked with FGSM and PGD after each epoch of an adversarial run "
                        "that has no validation split (the study's recipe, a refit): for the record and the "
                        "catastrophic-overfitting flag, never to choose (default 64; 0: only the clean test pass, "
                        "and no overfitting flag for such runs; measured 1.4x faster at fgsm 8/255)")


def _device(text: str) -> str:
    """auto, cpu, cuda or cuda:N, checked at parse time: spelling always, CUDA's presence when CUDA is named."""
    from busadv.settings import check_device, pick_device

    name = check_device(text)
    if name.startswith("cuda"):
        pick_device(name)
    return name


def _image_sizes(text: str) -> dict[str, int]:
    """'resnet50=64,simplecnn=128': every name a registered model, every size one that model accepts."""
    from busadv.models import MODELS

    out = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, size = part.partition("=")
        if not size.strip().isdigit() or len(size.strip()) > 6:
            raise ValueError(f"{part.strip()[:40]!r} is not model=pixels, e.g. resnet50=64")
        key = name.strip().lower()
        if key not in MODELS:
            raise ValueError(f"{name.strip()[:40]!r} is not a model; choose one of {', '.join(MODELS.names())}")
        MODELS.get(key).check_image_size(int(size))
        out[key] = int(size)
    return out


ROWS_FILE = (".csv", ".json")


def output_file(*suffixes: str) -> Callable[[str], str]:
    """An output path checked when the command line is read, before any work: its folder exists (it is not
    made: a typo must not grow a tree of folders) and accepts files, and its ending is one busadv writes."""
    def parse(text: str) -> str:
        import os
        from pathlib import Path

        path = Path(text).expanduser()
        shown = text[:200]
        if path.is_dir():
            raise ValueError(f"{shown} is a folder; name a file in it, e.g. {path / ('results' + suffixes[0])}")
        if suffixes and path.suffix.lower() not in suffixes:
            raise ValueError(f"{shown}: the file must end in {' or '.join(suffixes)}")
        folder = path.parent
        if not folder.is_dir():
            raise ValueError(f"{shown}: the folder {folder} does not exist; create it first or write elsewhere")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"{shown}: the folder {folder} is not writable; write elsewhere")
        if path.exists() and not path.is_file():
            raise ValueError(f"{shown} exists and is not a regular file; write elsewhere")
        return text
    return typed(parse)


rows_file = output_file(*ROWS_FILE)


attack_list = _names("busadv.attacks.ATTACKS", "attacks")
model_list = _names("busadv.models.MODELS", "models")
mode_list = _names("busadv.training.MODES", "modes")
epsilon_list = typed(_epsilons)
epsilon = typed(_epsilon)
seed_list = typed(_seeds)
seed_text = typed(_seed_text)
watch_images = typed(_watch_images)
critical_weight = typed(_critical_weight)
device = typed(_device)
image_sizes = typed(_image_sizes)  # per model, e.g. resnet50=64: the CPU budget for a large model


def data_arg(p: argparse.ArgumentParser) -> None:
    """--data and --device, which every command that touches images or models takes."""
    p.add_argument("--data", help="BUSI folder (with benign/ malignant/ normal/, or one level up); "
                                  "default: $BUSADV_DATA, else simulated phantoms")
    p.add_argument("--device", type=device, default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")


def checkpoint_command(sub: argparse._SubParsersAction, name: str, help: str) -> argparse.ArgumentParser:
    """A command that works on one checkpoint: the checkpoint, --data and --device, as every such command takes them."""
    p = sub.add_parser(name, help=help)
    data_arg(p)
    p.add_argument("checkpoint", help="a .pt file written by train, experiment or the Jobs page")
    return p


def write_files(rows: Iterable[Any], *paths: str | None) -> None:
    """Rows into every file the user named (--csv, --json; the ending picks the format), saying where each went."""
    from busadv.results import write_rows

    for path in filter(None, paths):
        print(f"wrote {write_rows(rows, path)}")
