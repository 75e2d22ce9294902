"""The Jobs page's settings turned into checked job configs, plain-language problems and time estimates.

Why checked here, before submitting: a typo found by the worker after minutes of data loading costs
the user those minutes; the engine's own config classes (TrainConfig, ExperimentConfig) say what is
wrong, and the page shows it beside a disabled Start button.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from busadv.app.checkpoints import training_rates
from busadv.app.dataset import DataFacts
from busadv.app.recipes import recipe_settings
from busadv.app.widgets import (
    BALANCE_CHOICES,
    LABEL_CHOICES,
    LEVER_CHOICES,
    LEVER_NUMBERS,
    LEVER_SELECTS,
    RANDOM_START_CHOICES,
    SELECTION_CHOICES,
    choice_index,
)
from busadv.attacks import attack_label, format_epsilon_list
from busadv.experiments import PRESETS, ExperimentConfig, grid_estimate, study_preset
from busadv.experiments.backends import BACKENDS
from busadv.experiments.config import parse_choose_among
from busadv.models import MODELS
from busadv.training import MODES, TrainConfig
from busadv.training.config import CHOOSABLE_LEVERS

DEFAULT_TEST_EPS = "2/255, 8/255, 0.05, 0.2, 0.5"


def with_recipe(settings: dict[str, Any], recipe: str) -> dict[str, Any]:
    """A form's settings with those it left to the recipe (None) taken from the recipe."""
    base = recipe_settings(recipe)
    return {**base, **{k: v for k, v in settings.items() if not (v is None and k in base)}}


def train_config(settings: dict[str, Any], test_epsilons: list[float] | None,
                 test_attacks: list[str], recipe: str = "best") -> tuple[dict[str, Any] | None, str | None]:
    """(the train job's config, None) or (None, what is wrong), checked by TrainConfig. Settings the form left
    to the recipe (None) take the recipe's values."""
    settings = with_recipe(settings, recipe)
    if test_epsilons is None:
        return None, "Fix the test ε above."
    if not test_attacks:
        return None, "Choose at least one test attack."
    try:
        TrainConfig.from_dict(settings)
    except (ValueError, TypeError) as exc:
        return None, str(exc)
    return dict(settings, test_epsilons=test_epsilons, test_attacks=test_attacks), None


CHOOSE_AMONG_HELP = ("e.g. critical_weight=1,1.5,2 (several settings apart by ';'): the seeds above that choose the "
                     "epoch counts train once per value, their pooled validation chooses the value with the epoch "
                     "count for each model, mode and training ε, and the grid's seeds train with the winner. "
                     "Settings: " + ", ".join(CHOOSABLE_LEVERS))


def experiment_config(settings: dict[str, Any], recipe: str = "best") -> tuple[ExperimentConfig | None, str | None]:
    """(the experiment, None) or (None, what is wrong), checked by ExperimentConfig (every run's settings).
    Settings the form left to the recipe (None) take the recipe's values, as a single run's do; values to choose
    among may come as the form's text ('critical_weight=1,2; clean_mix=0.3,0.5')."""
    if any(settings.get(name) is None for name in ("train_epsilons", "test_epsilons", "seeds")):
        return None, "Fix the settings marked above."
    if not settings.get("test_attacks"):
        return None, "Choose at least one test attack."
    if isinstance(settings.get("choose_among"), str):
        try:
            settings = dict(settings, choose_among=parse_choose_among(settings["choose_among"].split(";")))
        except ValueError as exc:
            return None, f"Choose among values: {exc}"
    try:
        return ExperimentConfig(**with_recipe(settings, recipe)), None
    except (ValueError, TypeError) as exc:
        return None, str(exc)


def estimate_text(experiment: ExperimentConfig, facts: DataFacts) -> str:
    """'roughly 12 min at this machine's measured training speed' (or '' without data): training and testing."""
    return grid_estimate(experiment, facts.images, *training_rates())


def single_run(config: dict[str, Any]) -> ExperimentConfig:
    """A one-run experiment of a training config, so one estimate serves the train and experiment tabs."""
    return ExperimentConfig(archs=[config["arch"]], modes=[config["mode"]],
                            train_epsilons=[config["epsilon"]],
                            seeds=[config["seed"]], test_attacks=config["test_attacks"],
                            test_epsilons=config["test_epsilons"], epochs=config["epochs"],
                            batch_size=config["batch_size"], image_sizes={config["arch"]: config["image_size"]},
                            test_fraction=config.get("test_fraction", 0.2), monitor_images=64,
                            train_pgd_steps=config.get("pgd_steps", 7))


def backend_labels() -> dict[str, str]:
    """Where an experiment's runs can execute (busadv.experiments.backends), name -> label."""
    return {b.name: b.label for b in BACKENDS}


def where_text(experiment: ExperimentConfig) -> str:
    """'on this machine, 2 runs at a time' or 'as Ray tasks on the cluster at 10.0.0.5:6379'."""
    at_once = f", {experiment.workers} at a time" if experiment.workers else ""
    if experiment.backend == "local":
        return "on this machine, one worker process per run" + (at_once or " (as many at a time as the cores hold)")
    if experiment.backend == "ray":
        where = f"the cluster at {experiment.address}" if experiment.address else \
            "the cluster in RAY_ADDRESS, else a Ray started on this machine"
        return f"as Ray tasks on {where}{at_once}"
    return f"on {BACKENDS.get(experiment.backend).label}{at_once}"


def experiment_summary(experiment: ExperimentConfig, facts: DataFacts) -> str:
    """'24 training runs, each tested clean and at …, on this machine …; roughly 2.0 h …'."""
    runs = len(experiment.runs())
    estimate = estimate_text(experiment, facts)
    chooser = ""
    if experiment.epochs_chosen_on:
        first = len(experiment.choosing_runs())
        among = f" and its value of {experiment.chosen_among_text()}" if experiment.choose_among else ""
        chooser = (f"{first} run{'s' if first != 1 else ''} on seeds {experiment.epochs_chosen_on} first choose each "
                   f"group's epoch count{among} on validation (tested clean only); then ")
    return (f"{chooser}{runs} training run{'s' if runs != 1 else ''}, each tested clean and at "
            f"{format_epsilon_list(experiment.test_epsilons)}, {where_text(experiment)}"
            + (f"; {estimate} (one run after another)." if estimate else "."))


# The experiment tab's preset buttons: each preset and the recipe it trains with.
PRESET_RECIPES: dict[str, str] = {"study": "study", "frontier": "best"}


def epsilon_input_text(values: Sequence[float]) -> str:
    """'1/255, 2/255, 0.05': small whole k/255 (below 0.05) as fractions, as the frontier is said; the rest, the
    study's 0.05, 0.2 and 0.5 included (0.2 is 51/255), as decimals, as the study says them."""
    return ", ".join(f"{round(e * 255)}/255" if abs(e * 255 - round(e * 255)) < 1e-6 and e < 0.05 else f"{e:g}"
                     for e in values)


def preset_state(name: str, prefix: str = "x_") -> dict[str, Any]:
    """A preset's settings (study or frontier) as the experiment tab's widget values (Session State keys)."""
    preset = PRESETS[name]()
    state: dict[str, Any] = {
        "archs": list(preset.archs), "modes": list(preset.modes),
        "train_eps": epsilon_input_text(preset.train_epsilons),
        "seeds": ", ".join(str(s) for s in preset.seeds), "attacks": list(preset.test_attacks),
        "test_eps": epsilon_input_text(preset.test_epsilons), "epochs": preset.epochs,
        "batch": preset.batch_size, "lr": preset.lr, "recipe": PRESET_RECIPES[name], "name": preset.name,
        "split": preset.split_policy,
        "labels": choice_index(LABEL_CHOICES, preset.adv_labels),
        "rs": choice_index(RANDOM_START_CHOICES, preset.random_start),
        # Left to the recipe (index 0) when it is the recipe's, so the selector says which value that is.
        "balance": 0 if preset.class_balance == recipe_settings(PRESET_RECIPES[name])["class_balance"]
        else choice_index(BALANCE_CHOICES, preset.class_balance),
        "select": 0 if preset.select == recipe_settings(PRESET_RECIPES[name])["select"]
        else choice_index(SELECTION_CHOICES, preset.select),
        "cw": preset.critical_weight,
        "epochs_on": preset.epochs_chosen_on, "choose": "",
    }
    recipe = recipe_settings(PRESET_RECIPES[name])
    for lever in LEVER_SELECTS:  # left to the recipe where the preset agrees with it, as "select" above
        value = getattr(preset, lever)
        state[lever] = 0 if value == recipe[lever] else choice_index({k: k for k in LEVER_CHOICES[lever]}, value)
    for lever in LEVER_NUMBERS:
        value = getattr(preset, lever)
        state[lever] = None if value == recipe[lever] else value
    state.update({f"size_{m.name}": preset.image_sizes.get(m.name, m.default_image_size) for m in MODELS})
    return {prefix + k: v for k, v in state.items()}


def study_help() -> str:
    """What the study preset fills in, said from the preset itself."""
    preset = study_preset()
    archs = " and ".join(MODELS.get(a).label for a in preset.archs)
    modes = ", ".join(MODES.get(m).label for m in preset.modes)
    attacks = ", ".join(attack_label(a) for a in preset.test_attacks)
    return (f"{archs}; {modes} at ε = {', '.join(f'{e:g}' for e in preset.train_epsilons)}; {len(preset.seeds)} "
            f"seeds, {preset.epochs} epochs, batch {preset.batch_size}; tested clean and under {attacks} at ε = "
            f"{', '.join(f'{e:g}' for e in preset.test_epsilons)}.")


def frontier_help() -> str:
    """What the frontier preset fills in, said from the preset itself."""
    preset = PRESETS["frontier"]()
    attacks = " and ".join(attack_label(a) for a in preset.test_attacks)
    return (f"The study's question, answered: busadv's FGSM recipe at training ε = "
            f"{epsilon_input_text(preset.train_epsilons)} and standard training, {len(preset.seeds)} seeds, "
            f"{preset.epochs} epochs of the best recipe; tested clean and under {attacks} at ε = "
            f"{epsilon_input_text(preset.test_epsilons)}. The Results page then draws the clean-robust frontier.")
