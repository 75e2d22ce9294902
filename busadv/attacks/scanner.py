"""Ordinary scanner variation as registry entries: what another machine, preset, operator or export does.

Not attacks (family CORRUPTION): nothing here looks at the model. They answer the clinician's question
beside the adversarial one: "is an 8/255 attack worse than what a different gain setting does anyway?"

Physical model. A B-mode image is the log-compressed echo amplitude: a dynamic range of DR dB
(nominally 60 dB) is mapped to grey levels 0..1, clipped at the display's floor and ceiling. So a
receive-gain change of g dB is an offset of g/DR in grey level, and time-gain compensation (TGC)
that drifts by s dB/cm is an offset growing with depth. Distances are in millimetres on a nominal
40 mm x 40 mm field of view (BUSI's linear-probe breast scans are about 4 cm wide), converted to
pixels at each model's input size, so a severity means the same physical change at 128 and 224 px.

Severity 1..5, as in ImageNet-C (Hendrycks & Dietterich 2019), each level a physical setting:
- speckle: extra multiplicative speckle of contrast (std/mean) 0.08 .. 0.35 on the grey level, with a
  grain of 0.15 mm axially and 0.3 mm laterally (a resolution cell); fully developed speckle has 0.52,
  so level 5 is two thirds of a fresh speckle pattern on top of the scanner's speckle reduction.
  Multiplicative: anechoic regions (cysts, shadows) stay dark, as on a scanner.
- gain: +-2 .. 12 dB overall gain (the sign drawn per image: too bright or too dark).
- tgc: TGC drift of +-0.5 .. 3.5 dB/cm from the skin line down (0 at the top, 14 dB at 4 cm for level 5).
- defocus: lateral Gaussian blur of sigma 0.2 .. 1.0 mm: out of the focal zone the beam widens; the
  pulse (axial resolution) does not change, so the blur is lateral only.
- motion: probe or patient motion during frame averaging (persistence): a linear blur 0.5 .. 4 mm
  long, its direction drawn per image.
- jpeg: lossy JPEG re-compression at quality 75, 50, 30, 20, 10 (PACS exports and teleradiology use
  lossy JPEG; 75 is a common export setting, 10 the worst one seen).
- dynamic-range: the display's dynamic range changed from 60 dB by a factor 1.1 .. 2.0, narrower or
  wider (drawn per image): narrower darkens and raises contrast, wider washes the image out.
Random draws (speckle pattern, signs, directions) come from the batch's seeded generator and do not
depend on the severity, so a higher severity is the same variation, stronger: its L2 size grows with
every level. Its L-inf size (the largest single-pixel change) grows too for the pixel-wise ones
(speckle, gain, TGC, dynamic range) but can level off for blurs and JPEG, which average neighbours.

Size. `perturbation_size(clean, perturbed)` gives the L-inf size and each image's L2 size, the terms
FGSM's epsilon is stated in. The registry's `run(context, eps)` is the corruption at equal size: the
change made by the reference severity (3) with each image's change scaled so that its L-inf size is
exactly eps (clamped to the pixel range, like FGSM). Scaling, not a search over severity: it hits eps
exactly for every image and every corruption (JPEG's quality is discrete; clipping makes L-inf flat in
severity), keeps the corruption's spatial pattern, and costs one corruption per batch. Above the
reference severity's own size the pattern is extrapolated linearly.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from busadv.attacks.base import ATTACKS, CORRUPTION, AttackContext, AttackSpec, register_attack

SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
REFERENCE_SEVERITY = 3      # the level whose pattern the equal-size mode scales
FIELD_OF_VIEW_MM = 40.0     # nominal width and depth of a breast scan
DYNAMIC_RANGE_DB = 60.0     # nominal display dynamic range: DR dB of echo level -> grey 0..1
SPECKLE_GRAIN_MM = (0.15, 0.3)  # (axial, lateral) correlation of the speckle pattern
NO_CHANGE = 1e-6            # an image changed less than this is left alone by the equal-size scaling


def perturbation_size(clean: torch.Tensor, perturbed: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(L-inf size over the batch, L2 size of each image): the terms epsilon is stated in, for any perturbation."""
    delta = (perturbed.detach() - clean.detach()).flatten(1).float()
    if delta.numel() == 0:
        return 0.0, torch.zeros(delta.shape[0])
    return float(delta.abs().max()), delta.norm(dim=1).cpu()


def scale_to_linf(x: torch.Tensor, delta: torch.Tensor, eps: float) -> torch.Tensor:
    """x plus each image's delta rescaled to L-inf size eps (images the delta leaves alone stay as they are)."""
    peak = delta.flatten(1).abs().amax(1).view(-1, *([1] * (delta.dim() - 1)))
    factor = torch.where(peak > NO_CHANGE, eps / peak.clamp_min(NO_CHANGE), torch.zeros_like(peak))
    return (x + (delta * factor).clamp(-eps, eps)).clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------------ the physics

def _mm_per_px(x: torch.Tensor) -> float:
    return FIELD_OF_VIEW_MM / x.shape[-1]


def _gaussian(sigma_px: float) -> torch.Tensor:
    if sigma_px < 1e-3:
        return torch.ones(1)
    radius = max(1, math.ceil(3 * sigma_px))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / sigma_px) ** 2)
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, sigma_y_px: float, sigma_x_px: float) -> torch.Tensor:
    """Separable Gaussian blur, edges replicated (the image does not fade to black at its border)."""
    channels = x.shape[1]
    for kernel, horizontal in ((_gaussian(sigma_x_px), True), (_gaussian(sigma_y_px), False)):
        if len(kernel) == 1:
            continue
        r = len(kernel) // 2
        weight = kernel.to(x).view(1, 1, 1, -1) if horizontal else kernel.to(x).view(1, 1, -1, 1)
        padded = F.pad(x, (r, r, 0, 0) if horizontal else (0, 0, r, r), mode="replicate")
        x = F.conv2d(padded, weight.expand(channels, 1, *weight.shape[2:]), groups=channels)
    return x


def _signs(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """+1 or -1 per image ([B, 1, 1, 1]): brighter or darker, narrower or wider."""
    signs = torch.randint(0, 2, (x.shape[0],), generator=generator) * 2 - 1
    return signs.to(x).view(-1, 1, 1, 1)


def _speckle(x: torch.Tensor, contrast: float, generator: torch.Generator) -> torch.Tensor:
    z = torch.randn(x.shape, generator=generator).to(x)
    z = _blur(z, SPECKLE_GRAIN_MM[0] / _mm_per_px(x), SPECKLE_GRAIN_MM[1] / _mm_per_px(x))
    z = z / z.flatten(1).std(1).clamp_min(1e-12).view(-1, 1, 1, 1)  # unit contrast whatever the grain
    return (x * (1 + contrast * z)).clamp(0, 1)


def _gain(x: torch.Tensor, gain_db: float, generator: torch.Generator) -> torch.Tensor:
    return (x + _signs(x, generator) * gain_db / DYNAMIC_RANGE_DB).clamp(0, 1)


def _tgc(x: torch.Tensor, db_per_cm: float, generator: torch.Generator) -> torch.Tensor:
    rows = x.shape[-2]
    depth_cm = (torch.arange(rows, dtype=x.dtype, device=x.device) + 0.5) / rows * FIELD_OF_VIEW_MM / 10
    offset = _signs(x, generator) * db_per_cm * depth_cm.view(1, 1, -1, 1) / DYNAMIC_RANGE_DB
    return (x + offset).clamp(0, 1)


def _defocus(x: torch.Tensor, sigma_mm: float, generator: torch.Generator) -> torch.Tensor:
    return _blur(x, 0.0, sigma_mm / _mm_per_px(x)).clamp(0, 1)


def _motion(x: torch.Tensor, length_mm: float, generator: torch.Generator) -> torch.Tensor:
    """The mean of copies shifted along a line: frames averaged while the probe moved."""
    b, _, h, w = x.shape
    angle = (torch.rand(b, generator=generator) * math.pi).to(x)
    length_px = length_mm / _mm_per_px(x)
    samples = max(2, math.ceil(length_px) + 1)
    out = torch.zeros_like(x)
    for t in torch.linspace(-0.5, 0.5, samples).tolist():
        theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = 2 * t * length_px * torch.cos(angle) / w  # affine_grid's coordinates span 2 per image
        theta[:, 1, 2] = 2 * t * length_px * torch.sin(angle) / h
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out += F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return (out / samples).clamp(0, 1)


def _jpeg(x: torch.Tensor, quality: float, generator: torch.Generator) -> torch.Tensor:
    pixels = (x.detach().cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
    out = np.empty_like(pixels)
    for index in np.ndindex(pixels.shape[:2]):
        buffer = io.BytesIO()
        Image.fromarray(pixels[index]).save(buffer, format="JPEG", quality=round(quality))
        out[index] = np.asarray(Image.open(buffer).convert("L"))
    return torch.from_numpy(out).to(x).div_(255.0)


def _dynamic_range(x: torch.Tensor, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Grey = 1 - (echo level below the top) / DR: a DR shrunk by `ratio` stretches every level below white."""
    factor = torch.where(_signs(x, generator) > 0, torch.tensor(ratio).to(x), torch.tensor(1 / ratio).to(x))
    return (1 - (1 - x) * factor).clamp(0, 1)


# ------------------------------------------------------------------------------------------ the registry

Corrupt = Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Corruption:
    name: str
    label: str
    explanation: str
    levels: tuple[float, ...]   # the physical parameter at severity 1..5
    describe: Callable[[float], str]
    apply: Corrupt
    salt: int                   # separates this corruption's random draws from the others'


def _at_severity(corruption: Corruption, context: AttackContext, severity: int) -> torch.Tensor:
    level = corruption.levels[check_severity(severity) - 1]
    return corruption.apply(context.x, level, context.generator(corruption.salt)).detach()


def _equal_size(corruption: Corruption, context: AttackContext, eps: float) -> torch.Tensor:
    delta = _at_severity(corruption, context, REFERENCE_SEVERITY) - context.x
    return scale_to_linf(context.x, delta, eps)


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("speckle", "Speckle", "Scanner variation, not an attack: extra speckle, the grain every ultrasound "
               "image has, multiplied into the tissue (dark cysts stay dark)",
               (0.08, 0.12, 0.18, 0.26, 0.35), lambda v: f"speckle contrast {v:g}", _speckle, 11),
    Corruption("gain", "Gain change", "Scanner variation, not an attack: the overall gain set higher or lower, "
               "so the whole image is brighter or darker", (2, 4, 6, 9, 12), lambda v: f"±{v:g} dB", _gain, 12),
    Corruption("tgc", "TGC drift with depth", "Scanner variation, not an attack: time-gain compensation "
               "mis-set, so the image grows brighter or darker with depth",
               (0.5, 1.0, 1.5, 2.5, 3.5), lambda v: f"±{v:g} dB/cm", _tgc, 13),
    Corruption("defocus", "Defocus blur", "Scanner variation, not an attack: the beam is out of focus, so edges "
               "blur sideways", (0.2, 0.35, 0.5, 0.7, 1.0), lambda v: f"lateral σ {v:g} mm", _defocus, 14),
    Corruption("motion", "Motion blur", "Scanner variation, not an attack: the probe or the patient moved while "
               "frames were averaged", (0.5, 1.0, 1.5, 2.5, 4.0), lambda v: f"{v:g} mm", _motion, 15),
    Corruption("jpeg", "JPEG re-compression", "Scanner variation, not an attack: lossy JPEG compression, as in "
               "a PACS export or a teleradiology link", (75, 50, 30, 20, 10), lambda v: f"quality {v:g}", _jpeg, 16),
    Corruption("dynamic-range", "Dynamic range change", "Scanner variation, not an attack: the display's dynamic "
               "range set narrower (darker, more contrast) or wider (washed out)",
               (1.1, 1.25, 1.4, 1.6, 2.0),
               lambda v: f"60 → {DYNAMIC_RANGE_DB / v:.0f} or {DYNAMIC_RANGE_DB * v:.0f} dB", _dynamic_range, 17),
)

for _corruption in CORRUPTIONS:
    register_attack(AttackSpec(
        name=_corruption.name, label=_corruption.label, explanation=_corruption.explanation,
        run=partial(_equal_size, _corruption), family=CORRUPTION,
        severity_scale=tuple(_corruption.describe(v) for v in _corruption.levels),
        at_severity=partial(_at_severity, _corruption)))


# ------------------------------------------------------------------------------------------ for callers

def corruption_names() -> tuple[str, ...]:
    """Every registered corruption (plugins' too), in registry order."""
    return tuple(spec.name for spec in ATTACKS if spec.family == CORRUPTION and spec.at_severity is not None)


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or not isinstance(severity, int) or severity not in SEVERITIES:
        raise ValueError(f"severity must be a whole number from {SEVERITIES[0]} to {SEVERITIES[-1]}, got {severity!r}")
    return severity


def corrupt(context: AttackContext, name: str, severity: int) -> torch.Tensor:
    """The batch under one corruption at one severity level (seeded by the context, like every attack)."""
    spec = ATTACKS.get(name)
    if spec.at_severity is None:
        raise ValueError(f"{spec.name!r} is not a scanner corruption; choose one of: {', '.join(corruption_names())}")
    return spec.at_severity(context, check_severity(severity)).clamp(0, 1)


def parse_corruptions(text: str | Sequence[str] | None, option: str = "corruptions") -> list[str]:
    """'speckle, gain' -> ['speckle', 'gain'] (None or empty: all); the message names the option and the choices."""
    known = corruption_names()
    parts = list(text) if isinstance(text, (list, tuple)) else str(text or "").replace(";", ",").split(",")
    names = [str(p).strip().lower() for p in parts if str(p).strip()]
    for name in names:
        if name not in known:
            what = "an attack, not a scanner corruption" if name in ATTACKS else "an unknown corruption"
            raise ValueError(f"{option}: {name[:40]!r} is {what}; choose from: {', '.join(known)}")
    return list(dict.fromkeys(names)) or list(known)


def parse_severities(text: str | int | Sequence[int | str] | None, option: str = "severities") -> list[int]:
    """'1-5', '1,3,5', 3 or [1, 3] -> sorted levels (None: all); the message names the option."""
    if text is None:
        return list(SEVERITIES)
    parts = [text] if isinstance(text, int) else list(text) if isinstance(text, (list, tuple)) \
        else str(text).replace(";", ",").split(",")
    levels: set[int] = set()
    for part in (str(p).strip() for p in parts):
        if not part:
            continue
        low, dash, high = part.partition("-")
        try:
            span = list(range(int(low), int(high) + 1)) if dash else [int(part)]
        except ValueError:
            span = []
        if not span:
            raise ValueError(f"{option}: {part[:20]!r} is not a level or a range like 1-5")
        for level in span:
            if level not in SEVERITIES:
                raise ValueError(f"{option}: {level} is outside {SEVERITIES[0]}..{SEVERITIES[-1]} (ImageNet-C's scale)")
            levels.add(level)
    if not levels:
        raise ValueError(f"{option}: give at least one level from {SEVERITIES[0]} to {SEVERITIES[-1]}")
    return sorted(levels)
