"""`python -m busadv corruptions | transfer`: scanner variation and transfer attacks from the command line."""

from __future__ import annotations

import argparse
import sys
from typing import IO, Any

from busadv.cli import arguments
from busadv.cli.output import ProgressPrinter, print_diagnosis_texts, print_rows


def _severities(text: str) -> list[int]:
    from busadv.attacks.scanner import parse_severities

    return parse_severities(text, "severities")


def _corruptions(text: str) -> list[str]:
    from busadv.attacks.scanner import parse_corruptions

    return parse_corruptions(text, "corruptions")


def _fraction(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"


# ------------------------------------------------------------------------------------------ corruptions

def print_corruptions(result: dict[str, Any], stream: IO[str] | None = None) -> None:
    """Per corruption and severity: its physical setting, its size in FGSM's terms, and the measures."""
    from busadv.attacks import attack_label, format_epsilon

    out = stream or sys.stdout
    rows = [r for r in result["rows"] if r.get("severity") is not None]
    clean = next(r for r in result["rows"] if r["attack"] == "none")
    out.write(f"test images: {result['test_images']} ({clean['n']} images, {clean['data_source']})\n")
    out.write(f"clean: balanced accuracy {clean['balanced_accuracy']:.3f}, accuracy {clean['accuracy']:.3f} "
              f"(majority-class rate {clean['majority_rate']:.3f}; chance balanced accuracy "
              f"{1 / max(len(clean['confusion']), 1):.3f})\n")
    out.write(f"{'corruption':<22} {'level':>5}  {'setting':<22} {'L-inf size':>18} {'L2/image':>9} "
              f"{'balanced acc':>12} {'accuracy':>9} {'malignant found':>16}  note\n")
    sizes = {(s["corruption"], s["severity"]): s for s in result.get("sizes", [])}
    for r in rows:
        size = sizes.get((r["attack"], r["severity"]), {})
        found = f"{r['malignant_total'] - r['malignant_missed']}/{r['malignant_total']}"
        note = f"COLLAPSED: '{r['dominant_class']}' for {r['dominant_share']:.0%}" if r["collapsed"] else ""
        out.write(f"{attack_label(r['attack'])[:22]:<22} {r['severity']:>5}  {size.get('setting', '')[:22]:<22} "
                  f"{format_epsilon(r['test_epsilon']):>18} {size.get('l2', float('nan')):>9.2f} "
                  f"{r['balanced_accuracy']:>12.3f} {r['accuracy']:>9.3f} {found:>16}  {note}\n")
    out.write("\nmeans over severities (ImageNet-C style, no reference model): mean score and drop from clean\n")
    out.write(f"{'corruption':<22} {'balanced acc':>12} {'drop':>7} {'accuracy':>9} {'drop':>7}\n")
    for line in result.get("summary", []):
        name = line["corruption"] if line["corruption"] == "all (mean)" else attack_label(line["corruption"])
        out.write(f"{name[:22]:<22} {_fraction(line['balanced_accuracy_mean']):>12} "
                  f"{_fraction(line['balanced_accuracy_drop']):>7} {_fraction(line['accuracy_mean']):>9} "
                  f"{_fraction(line['accuracy_drop']):>7}\n")
    overall = result.get("summary", [{}])[-1]
    if "accuracy_mean" in overall:
        out.write(f"mean corruption error (1 - mean accuracy over corruptions and severities): "
                  f"{1 - overall['accuracy_mean']:.3f}; balanced: {1 - overall['balanced_accuracy_mean']:.3f}\n")


def cmd_corruptions(args: argparse.Namespace) -> int:
    from busadv.experiments.robustness import corruption_job
    from busadv.results import row_from_dict

    settings = ("checkpoint", "corruptions", "severities", "epsilons", "compare_attacks", "pgd_steps", "seed",
                "device", "data")
    config = {name: getattr(args, name) for name in settings if getattr(args, name) is not None}
    result = corruption_job(config, progress=ProgressPrinter())
    print_corruptions(result)
    equal = [row_from_dict(r) for r in result["rows"] if r.get("severity") is None and r["attack"] != "none"]
    if equal:
        print("\nat equal L-inf size (each corruption's change scaled to ε, beside the attacks at the same ε):")
        print_rows(equal)
    print()
    print_diagnosis_texts(result["diagnoses"])
    rows = [row_from_dict(r) for r in result["rows"]]
    arguments.write_files(rows, args.csv, args.json)
    print(f"results store: {result['results_file']}")
    return 0


# ------------------------------------------------------------------------------------------ transfer

def transfer_lines(saved: dict[str, Any]) -> list[dict[str, Any]]:
    """One line per (source, target) cell with both measures and the target's clean scores: for CSV and tables."""
    from busadv.evaluation.transfer import TransferMatrix

    matrix = TransferMatrix.from_dict(saved["matrix"])
    return [{"source": matrix.models[i], "target": matrix.models[j], "attack": matrix.attack,
             "epsilon": matrix.epsilon, "white_box": i == j, "n": cell.n, "accuracy": cell.accuracy,
             "balanced_accuracy": cell.balanced_accuracy, "malignant_sensitivity": cell.sensitivity,
             "changed": cell.changed, "target_clean_accuracy": matrix.clean[j].accuracy,
             "target_clean_balanced_accuracy": matrix.clean[j].balanced_accuracy}
            for i, row in enumerate(matrix.cells) for j, cell in enumerate(row)]


def print_transfer(saved: dict[str, Any], stream: IO[str] | None = None) -> None:
    """The matrix twice (balanced accuracy, then accuracy): rows are sources, columns targets, * the diagonal."""
    from busadv.attacks import attack_label, format_epsilon
    from busadv.evaluation.transfer import TransferMatrix

    out = stream or sys.stdout
    matrix = TransferMatrix.from_dict(saved["matrix"])
    out.write(f"{attack_label(matrix.attack)} at ε={format_epsilon(matrix.epsilon)}, crafted on each source (row) "
              f"and shown to each target (column), on {matrix.n} test images: {saved.get('test_images', '')}\n")
    for k, name in enumerate(matrix.models, start=1):
        out.write(f"  [{k}] {name}\n")
    for measure, title in (("balanced_accuracy", "balanced accuracy"), ("accuracy", "accuracy")):
        out.write(f"\n{title} of the target (* = white-box: the source attacks itself)\n")
        out.write(f"{'source / target':<16}" + "".join(f"{f'[{k}]':>9}" for k in range(1, len(matrix.models) + 1))
                  + "\n")
        for i, row in enumerate(matrix.table(measure)):
            out.write(f"{f'[{i + 1}]':<16}" + "".join(f"{f'{v:.3f}' + ('*' if i == j else ' '):>9}"
                                                      for j, v in enumerate(row)) + "\n")
        out.write(f"{'clean':<16}" + "".join(f"{f'{v:.3f} ':>9}" for v in matrix.clean_scores(measure)) + "\n")


def cmd_transfer(args: argparse.Namespace) -> int:
    from busadv.experiments.robustness import transfer_job

    settings = ("checkpoints", "attack", "epsilon", "pgd_steps", "seed", "device", "data")
    config = {name: getattr(args, name) for name in settings if getattr(args, name) is not None}
    saved = transfer_job(config, progress=ProgressPrinter())
    print_transfer(saved)
    print(f"saved for the Results page: {saved['transfer_file']}")
    if args.csv:
        arguments.write_files(transfer_lines(saved), args.csv)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from busadv.attacks import ADVERSARIAL, ATTACKS
    from busadv.attacks.scanner import corruption_names

    names = ", ".join(corruption_names())
    c = arguments.checkpoint_command(sub, "corruptions", "a checkpoint under scanner variation (speckle, gain, TGC, "
                                     "blur, JPEG, dynamic range) at severities 1-5, as in ImageNet-C")
    c.add_argument("--corruptions", type=arguments.typed(_corruptions), default=None,
                   help=f"comma list of {names} (default: all)")
    c.add_argument("--severities", type=arguments.typed(_severities), default="1-5",
                   help="levels 1..5, e.g. 1-5 or 1,3,5 (each level's physical setting: see the table)")
    c.add_argument("--epsilons", type=arguments.epsilon_list, default="2/255,8/255",
                   help="L-inf sizes for the equal-size comparison with the attacks ('' to skip it)")
    c.add_argument("--compare-attacks", type=arguments.attack_list, default="fgsm,pgd,noise",
                   help="attacks measured at the same sizes, beside the corruptions")
    c.add_argument("--pgd-steps", type=int, default=10)
    c.add_argument("--seed", type=int, default=0, help="seeds the random draws (speckle pattern, signs, directions)")
    c.add_argument("--csv", type=arguments.rows_file), c.add_argument("--json", type=arguments.rows_file)
    c.set_defaults(func=cmd_corruptions)

    adversarial = [a.name for a in ATTACKS if a.family == ADVERSARIAL]
    t = sub.add_parser("transfer", help="attacks crafted on one checkpoint and tested on others: the transfer matrix")
    arguments.data_arg(t)
    t.add_argument("checkpoints", nargs="+", help="two or more checkpoint files")
    t.add_argument("--attack", default="pgd", choices=adversarial)
    t.add_argument("--epsilon", type=arguments.epsilon, default="8/255")
    t.add_argument("--pgd-steps", type=int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--csv", type=arguments.rows_file, help="one line per (source, target) cell")
    t.set_defaults(func=cmd_transfer)

