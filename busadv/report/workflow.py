"""`report` as a dict-in, dict-out workflow: gather the study's runs, judge its findings, write the HTML.

The CLI (`python -m busadv report`), the Study page and a background job all call `report_job`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from busadv import plots
from busadv.attacks import attack_label, format_epsilon, parse_epsilon_list
from busadv.data import load_dataset
from busadv.data.cache import atomic_write_text
from busadv.models.registry import MODELS
from busadv.plots.style import legend_below
from busadv.progress import ProgressEvent, ProgressFn, ignore_progress
from busadv.registry import parse_name_list
from busadv.report.findings import Finding
from busadv.report.html import Section, render, verdict_badge
from busadv.report.plan import Progress, gather
from busadv.report.study import BEST_RECIPE, judge, study_plan
from busadv.results import GroupSummary, ResultRow, diagnose, load_store, summarize
from busadv.results.tradeoff import epsilon_tradeoffs
from busadv.settings import home
from busadv.training import parse_seed_list

SETTINGS = ("preset", "out", "archs", "seeds", "epochs", "image_sizes", "data", "device", "run", "autoattack")


def _findings_section(findings: Sequence[Finding]) -> Section:
    rows = "".join(f"<tr><td>{_e(f.claim)}</td><td>{verdict_badge(f.verdict)}</td><td>{_e(f.trap)}</td>"
                   f"<td>{'<br>'.join(_e(x) for x in f.evidence)}</td></tr>" for f in findings)
    table = ("<table><tr><th>The study's finding</th><th>Verdict</th><th>Trap that explains it</th>"
             f"<th>Evidence (means over seeds)</th></tr>{rows}</table>")
    return Section("The study's findings, judged from the data", paragraphs=[
        "Each verdict is computed from the result rows below: 'holds' when the effect survives balanced accuracy, "
        "PGD and AutoAttack; 'artefact' when a trap explains it; 'not seen' when the effect did not occur here."],
        html_blocks=[table])


def _e(text: str) -> str:
    import html

    return html.escape(str(text))


def _figures(groups: Sequence[GroupSummary], arch: str) -> Section:
    mine = [g for g in groups if g.arch == arch]
    study = [g for g in mine
             if g.train_mode in ("standard", "fgsm-study", "fgsm-offline") and g.split_policy != "random"]
    section = Section(f"{arch}: the study's figure, then what busadv adds")
    if not study:
        section.paragraphs.append(f"No {arch} runs in these results.")
        return section
    honest = [g for g in mine if g.split_policy != "random"]
    strongest = "autoattack" if any(g.attack == "autoattack" for g in honest) else "pgd"
    charts = [
        (plots.accuracy_bars(study, attack="fgsm", metric="accuracy",
                             title=f"{arch}: accuracy on clean and FGSM-perturbed test images, as the study drew it"),
         "Bars: mean over seeds; error bars: ± one standard deviation; dots: single runs; red crosses: runs that "
         "collapsed. The dashed line is the accuracy of a model that always answers the most common class (benign)."),
        (plots.accuracy_bars(honest, attack="pgd", metric="balanced_accuracy",
                             title=f"{arch}: balanced accuracy under PGD, busadv's recipe included"),
         "Balanced accuracy is the mean of the per-class recalls: 33% for any model that gives one answer to "
         "everything, whatever the class sizes. PGD is a far stronger attack than FGSM."),
        (plots.accuracy_curve(honest, attack=strongest, metric="balanced_accuracy",
                              title=f"{arch}: balanced accuracy as the {attack_label(strongest)} ε grows"),
         "Small epsilons (2/255 to 8/255) are the usual ones; the study's 0.05 to 0.5 are far larger. Gaps are "
         "untested epsilons."),
        (plots.accuracy_bars(honest, attack="pgd", metric="malignant_sensitivity",
                             title=f"{arch}: share of malignant images called malignant, under PGD"),
         "A model that never says 'malignant' scores 0 here, however high its accuracy."),
    ]
    section.figures += [(legend_below(figure), caption) for figure, caption in charts]
    robust_eps = 8 / 255 if any(abs(g.test_epsilon - 8 / 255) < 1e-9 for g in honest) else 0.05
    section.figures.append((plots.robustness_frontier(honest, strongest, robust_eps),
                            "One point per training recipe. Up and to the right is better; a recipe near the dashed "
                            "lines answers one class for everything."))
    return section


def tradeoff_sections(rows: Sequence[ResultRow], archs: Sequence[str]) -> list[Section]:
    """The study's question (which training epsilon buys how much robustness, at what clean cost) for every
    frontier the results store holds (`experiment --preset frontier`), judged by AutoAttack at 4/255."""
    sections = []
    for answer in epsilon_tradeoffs([r for r in rows if r.arch in archs and r.split_policy != "random"]):
        header = list(answer.table()[0])
        section = Section(
            f"{answer.arch}: which training ε buys how much robustness ({answer.mode})",
            paragraphs=[answer.best_text, answer.clean_text, f"The rule: {answer.rule}.",
                        "Each training ε is compared with standard training seed by seed (same seed: same split and "
                        "initialisation); intervals are 95% t-intervals of the paired differences."],
            table=(header, [list(line.values()) for line in answer.table()]))
        section.figures.append((plots.epsilon_tradeoff(answer),
                                "One point per training ε (0 = standard training with the same recipe): mean ± std "
                                "over seeds, faint dots are single seeds. The black ring is the rule's choice."))
        sections.append(section)
    return sections


def _split_section(groups: Sequence[GroupSummary]) -> Section:
    rows = []
    for g in groups:
        if g.train_mode == "standard" and g.attack == "none":
            acc, bal = g.stat("accuracy"), g.stat("balanced_accuracy")
            rows.append([g.arch, str(g.split_policy), acc.text(), bal.text(), str(g.n_runs)])
    return Section("Random versus duplicate-aware splits", paragraphs=[
        "BUSI holds many near-duplicates: the same scan saved again with other calipers, crops or text (149 groups, "
        "335 of 780 images in this copy). The study's random split can test a model on a scan it learned from; "
        "busadv's default keeps each group on one side."],
        table=(["model", "split", "clean accuracy", "clean balanced accuracy", "runs"], sorted(rows)))


def _methods(config: dict[str, Any], counts: Progress, missing: list[str], data_source: str) -> Section:
    best = ", ".join(f"{k}={v}" for k, v in BEST_RECIPE.items())
    lines = [f"Data: {data_source}.",
             f"Models: {', '.join(config['archs'])}; seeds {config['seeds']}; {config['epochs']} epochs, batch 32, "
             f"Adam, cross-entropy; image sizes {config['image_sizes'] or 'the models defaults'}.",
             "Training recipes: standard; fgsm-study (the study's plain FGSM, online, true labels); fgsm-offline (the "
             "training set perturbed once with a standard model, then a fresh model trained on it); and busadv's "
             f"recipe ({best}).",
             "Attacks: FGSM; FGSM on predicted labels; random noise; PGD (10 steps, random start, worst iterate); "
             "AutoAttack from ART's attacks (APGD-CE, APGD-T, DeepFool for FAB, Square; reduced budget) at "
             f"{', '.join(format_epsilon(e) for e in config['autoattack']) or 'no epsilon'}.",
             f"Runs reused from the results store: {counts.reused}; evaluated again from their checkpoints: "
             f"{counts.evaluated}; trained for this report: {counts.trained}."]
    section = Section("Methods", paragraphs=lines)
    if missing:
        section.html_blocks.append("<div class='warning'>Not run (this report was asked not to train): "
                                   + "; ".join(_e(m) for m in missing) + "</div>")
    return section


def _diagnoses(rows: Sequence[ResultRow]) -> Section:
    found = diagnose(rows)
    blocks = [f"<div class='warning'><b>{_e(d.title)}</b>: {_e(d.message)}</div>" for d in found]
    return Section("Diagnoses, run by run", paragraphs=[] if found else ["No trap found."], html_blocks=blocks)


def report_job(config: dict[str, Any], progress: ProgressFn = ignore_progress) -> dict[str, Any]:
    """Run or reuse the study's protocol, judge its findings and write a self-contained HTML report."""
    config = dict(config)
    unknown = sorted(set(config) - set(SETTINGS))
    if unknown:
        raise ValueError(f"unknown report setting(s): {', '.join(unknown)}; known: {', '.join(SETTINGS)}")
    if config.get("preset", "study") != "study":
        raise ValueError(f"unknown report preset {config.get('preset')!r}; choose: study")
    archs = parse_name_list(config.get("archs", list(MODELS.names())), MODELS, "models")
    seeds = parse_seed_list(config.get("seeds", "0-4"))
    epochs = int(config.get("epochs", 10))
    image_sizes = {str(k): int(v) for k, v in dict(config.get("image_sizes") or {}).items()}
    autoattack = parse_epsilon_list(config.get("autoattack", [8 / 255, 0.05]), "AutoAttack epsilons")
    plan = study_plan(config.get("data"), archs, seeds, epochs, image_sizes, autoattack, config.get("device", "auto"))
    out = Path(config.get("out") or reports_dir() / f"study-{time.strftime('%Y%m%d-%H%M%S')}.html")
    if out.suffix.lower() not in (".html", ".htm"):
        raise ValueError(f"--out: a report is an .html file, not {out.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows, counts, missing = gather(plan, progress, run=bool(config.get("run", True)))
    findings = judge(rows, archs)
    groups = summarize(rows)
    source = load_dataset(config.get("data"), 32).source if config.get("data") or not rows else rows[0].data_source
    summary = {"archs": archs, "seeds": seeds, "epochs": epochs, "image_sizes": image_sizes, "autoattack": autoattack}
    stored, _ = load_store()
    same_data = {r.data_fingerprint for r in rows}
    stored = [r for r in stored if r.data_fingerprint in same_data]
    sections = [_findings_section(findings), *[_figures(groups, a) for a in archs],
                *tradeoff_sections(stored, archs), _split_section(groups),
                _diagnoses(rows), _methods(summary, counts, missing, source)]
    text = render("The BUSI adversarial study, answered", f"{source} · {len(rows)} result rows", sections)
    atomic_write_text(text, out)
    result = {"html": str(out), "findings": [f.__dict__ for f in findings], "reused": counts.reused,
              "evaluated": counts.evaluated, "trained": counts.trained, "missing": missing, "rows": len(rows),
              "settings": summary, "data_source": source}
    sidecar = json.dumps(result, indent=1)
    atomic_write_text(sidecar, out.with_suffix(".json"))  # for pages: no HTML parsing
    if out.resolve().parent != reports_dir().resolve():  # a report written elsewhere is still listed on the Study page
        where = hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:8]
        atomic_write_text(sidecar, reports_dir() / f"{out.stem}-{where}.json")
    progress(ProgressEvent(1.0, f"report written: {out}"))
    return result


def reports_dir() -> Path:
    path = home() / "reports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def stored_reports(folder: Path | None = None) -> list[dict[str, Any]]:
    """The summaries of written reports (their JSON sidecars), newest first; unreadable ones left out."""
    out = []
    for path in sorted((folder or reports_dir()).glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            summary = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and Path(str(summary.get("html", ""))).is_file():
            out.append(summary)
    return out
