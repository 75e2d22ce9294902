"""Epsilon, said once: [0, 1] pixel scale, typed as 0.031 or 8/255, shown in both forms."""

from __future__ import annotations

STUDY_EPSILONS: tuple[float, ...] = (0.05, 0.2, 0.5)
SMALL_EPSILONS: tuple[float, ...] = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)
STRIP_EPSILONS: tuple[float, ...] = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, 0.05, 0.2, 0.5)
MAX_EPSILONS = 64  # a list longer than this is a typo, not an experiment


def check_epsilon(eps: float) -> float:
    eps = float(eps)
    if not 0.0 <= eps <= 1.0:  # also false for NaN
        raise ValueError(f"epsilon must lie in [0, 1] (pixel scale; 8/255 = 0.031), got {eps}")
    return eps


def parse_epsilon(text: str | float) -> float:
    """'8/255', '0.031' or 0.031 -> 0.031; epsilons are typed both ways by users."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return check_epsilon(float(text))
    value = str(text).strip()
    try:
        if "/" in value:
            num, den = value.split("/", 1)
            return check_epsilon(float(num) / float(den))
        return check_epsilon(float(value))
    except ZeroDivisionError:
        raise ValueError(f"epsilon {text!r} divides by zero") from None
    except ValueError as exc:
        if "epsilon" in str(exc):
            raise
        raise ValueError(f"epsilon {value[:40]!r} is not a number or a fraction like 8/255") from None


def parse_epsilon_list(text: str | list | tuple, option: str = "epsilons") -> list[float]:
    """'2/255, 8/255, 0.05' -> [0.0078, 0.031, 0.05]; the message names the option and the bad entry."""
    parts = list(text) if isinstance(text, (list, tuple)) else str(text).replace(";", ",").split(",")
    parts = [p for p in parts if str(p).strip()]
    if len(parts) > MAX_EPSILONS:
        raise ValueError(f"{option}: {len(parts)} values; at most {MAX_EPSILONS} are allowed")
    try:
        return [parse_epsilon(part) for part in parts]
    except ValueError as exc:
        raise ValueError(f"{option}: {exc}") from None


def format_epsilon(eps: float) -> str:
    """0.031 -> '0.031 (8/255)': both forms, as users think in either."""
    k = eps * 255
    if abs(k - round(k)) < 1e-6:
        return f"{eps:.3g} ({round(k)}/255)"
    return f"{eps:.3g} (~{k:.1f}/255)"


def format_epsilon_list(values: list[float] | tuple[float, ...]) -> str:
    return ", ".join(format_epsilon(v) for v in sorted(values))
