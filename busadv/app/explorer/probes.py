"""The explorer's caches: one shared PerturbationProbe per (checkpoint version, image), and its answers.

Why two kinds of cache: the probe is a live object holding the model's gradient for the image, safe to
share between sessions (it fills its own caches under a lock), so it lives in st.cache_resource, as
does each model's Grad-CAM mapper (a private copy of the model, see busadv.explain). What the page gets
back from them (the sweep, attention maps, transfers) is data: it lives in st.cache_data, so each
session receives its own copy and nobody can change another's. The smallest flipping epsilon and the
strip of images (the slider's every position) are kept by the probe itself, because their search shows
its progress where it runs, which a cached function cannot draw into.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import streamlit as st

from busadv.app.checkpoints import load_model, mtime_ns
from busadv.app.dataset import UPLOAD_ERRORS, decode_upload, load_images
from busadv.attacks import ATTACKS, STRIP_EPSILONS
from busadv.data import ImageSet, data_setting, find_busi_root
from busadv.data.decode import decode_full
from busadv.data.phantoms import _native_size  # the size phantoms are drawn at before resizing
from busadv.explain import AttentionMapper, CamResult
from busadv.explorer import PerturbationProbe, StepProgress, StripItem
from busadv.models.checkpoints import CheckpointInfo


@dataclass(frozen=True)
class ImageChoice:
    """The image the explorer shows, independent of any model's input size."""

    key: str                    # identity for caches: content hash of an upload, or data fingerprint + name
    name: str
    true_label: int | None      # None: an upload with no known diagnosis (attacks then aim at the prediction)
    upload: bytes | None = None


def images_of_class(images: ImageSet, label: int) -> list[int]:
    """Indices of the images filed under one class, for the explorer's image picker."""
    return (images.labels == label).nonzero().flatten().tolist()


def image_for(choice: ImageChoice, info: CheckpointInfo) -> tuple[np.ndarray | None, str | None]:
    """The chosen image at a checkpoint's input size: (uint8 [s, s], None) or (None, why not)."""
    if choice.upload is not None:
        return decode_upload(choice.upload, info.image_size)
    images = load_images(info.image_size)
    try:
        index = images.names.index(choice.name)
    except ValueError:
        return None, f"{choice.name} is not in the active data."
    return images.images[index, 0].numpy(), None  # PerturbationProbe copies it


def lesion_for(choice: ImageChoice, info: CheckpointInfo) -> tuple[np.ndarray | None, str | None]:
    """The chosen image's lesion outline at the model's input size: (bool [s, s], None) or (None, why there is none)."""
    if choice.upload is not None:
        return None, ("an uploaded image comes without a lesion outline, so attention on the lesion cannot be "
                      "measured (the correlation of the two maps still can)")
    images = load_images(info.image_size)
    if images.masks is None:
        return None, ("this BUSI folder has no lesion masks: Kaggle's download keeps one beside each image "
                      "('benign (1)_mask.png'); copy them in to measure attention on the lesion")
    mask = images.masks[images.names.index(choice.name), 0].numpy()
    if not mask.any():
        normal = choice.true_label is not None and info.classes[choice.true_label] == "normal"
        return None, ("a normal image has no lesion to point at" if normal else
                      "no lesion mask was found for this image")
    return mask, None


@st.cache_data(max_entries=16, show_spinner="Reading the original image…")
def original_image(choice: ImageChoice, image_size: int) -> tuple[np.ndarray | None, str]:
    """The image before it was shrunk to the model's square input: (uint8 grayscale in its own shape, what it is)."""
    if choice.upload is not None:
        try:
            return decode_full(choice.upload), "the uploaded file"
        except UPLOAD_ERRORS:
            return None, "the uploaded file cannot be read at full size"
    data = data_setting()
    if data is None:  # phantoms are drawn at a fixed size, then resized like real scans
        native = _native_size(image_size)
        images = load_images(native)
        return images.images[images.names.index(choice.name), 0].numpy(), f"the phantom as drawn, {native} px"
    path = find_busi_root(data) / choice.name
    try:
        return decode_full(path), f"the file {choice.name}"
    except UPLOAD_ERRORS:
        return None, f"{choice.name} cannot be read at full size"


# Cache keys: (checkpoint path, its version, image key, true label). The probe itself is passed with a
# leading underscore, so Streamlit does not hash it; the key says which probe it is.
ProbeKey = tuple[str, int, str, int | None]


@st.cache_resource(max_entries=64, show_spinner="Computing the gradient once for this model and image…")
def _probe(path: str, version: int, image_key: str, true_label: int | None, _image: np.ndarray) -> PerturbationProbe:
    return PerturbationProbe(load_model(path, version).require_model(), _image, true_label)


@st.cache_data(max_entries=128, show_spinner="Computing the probabilities as ε grows…")
def _sweep(key: ProbeKey, attack: str, _probe: PerturbationProbe) -> tuple[list[float], np.ndarray]:
    return _probe.sweep(attack)


@st.cache_resource(max_entries=4, show_spinner="Preparing Grad-CAM for this model…")
def _mapper(path: str, version: int) -> AttentionMapper:
    checkpoint = load_model(path, version)
    return AttentionMapper(checkpoint.require_model(), checkpoint.arch)


@st.cache_data(max_entries=256, show_spinner="Computing where the model looks…")
def _attention(key: ProbeKey, attack: str, eps: float, target: int | None, _probe: PerturbationProbe,
               _mapper: AttentionMapper) -> CamResult:
    return _mapper.maps(_probe.perturbed(attack, eps), target)


@st.cache_data(max_entries=512, show_spinner="Asking the second model about the first model's image…")
def _transfer(key: ProbeKey, source: ProbeKey, attack: str, eps: float, _probe: PerturbationProbe,
              _source: PerturbationProbe) -> np.ndarray:
    return _probe.probabilities_of(_source.perturbed(attack, eps), _source.x)


@dataclass(frozen=True)
class ProbeView:
    """One model looking at one image: the shared probe plus the cached answers the page shows."""

    info: CheckpointInfo
    choice: ImageChoice
    probe: PerturbationProbe

    @property
    def key(self) -> ProbeKey:
        return str(self.info.path), mtime_ns(self.info.path), self.choice.key, self.choice.true_label

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    def probabilities(self, attack: str, eps: float) -> np.ndarray:
        """Class probabilities under `attack` at `eps` (one forward pass after the first)."""
        return self.probe.probabilities(attack, eps)

    def clean(self) -> np.ndarray:
        return self.probe.probabilities("none", 0.0)

    def smallest_flip(self, attack: str, progress: StepProgress | None = None) -> float | None:
        """Kept by the shared probe per attack: the page never waits for the search again."""
        return self.probe.smallest_flip(attack, progress=progress)

    def strip(self, attack: str, epsilons: tuple[float, ...] = STRIP_EPSILONS,
              progress: StepProgress | None = None) -> list[StripItem]:
        """The image at several epsilons (sorted), each with its answer; an iterative attack's images are kept by the
        probe, so only the first call runs them."""
        return self.probe.strip(attack, sorted(epsilons), progress=progress)

    def slow(self, attack: str) -> bool:
        """Whether each epsilon of `attack` is an attack of its own (PGD): then the page shows progress."""
        return attack != "none" and not ATTACKS.get(attack).single_step

    def sweep(self, attack: str) -> tuple[list[float], np.ndarray]:
        """Class probabilities on a fine epsilon grid up to 0.2."""
        return _sweep(self.key, attack, _probe=self.probe)

    def attention(self, attack: str, eps: float, target: int | None = None) -> CamResult:
        """Grad-CAM of the image under `attack` at `eps`, for `target` (None: the model's answer on that image)."""
        mapper = _mapper(str(self.info.path), mtime_ns(self.info.path))
        if eps == 0:
            attack = "none"  # the clean image's map is the same for every attack: one cache entry
        return _attention(self.key, attack, float(eps), target, _probe=self.probe, _mapper=mapper)

    def transferred(self, source: ProbeView, attack: str, eps: float) -> np.ndarray:
        """This model's probabilities on `source`'s perturbed image (a transfer attack), resized to this model."""
        return _transfer(self.key, source.key, attack, float(eps), _probe=self.probe, _source=source.probe)


def open_probe(info: CheckpointInfo, choice: ImageChoice, image: np.ndarray) -> ProbeView:
    """The shared probe of this checkpoint version and image, wrapped with its cached answers."""
    probe = _probe(str(info.path), mtime_ns(info.path), choice.key, choice.true_label, image)
    return ProbeView(info, choice, probe)


def progress_bar(what: str) -> StepProgress:
    """A progress callback that draws its bar right here, where the result will appear.

    Why here and not as a spinner at the top of the page: a search of several attacks (PGD's smallest
    flipping epsilon, a strip of PGD images) takes seconds to minutes, and the wait belongs beside the
    number it produces. Nothing is drawn for an answer already kept (the callback is then never called);
    the bar disappears when the work is done.
    """
    slot = st.empty()

    def report(done: int, total: int) -> None:
        if done >= total:
            slot.empty()
        else:
            slot.progress(done / max(total, 1), text=f"{what}: {done} of {total}…")

    return report
