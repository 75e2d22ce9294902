"""The active images: what they are (read without decoding), the banner that names them, cached loading.

Why everywhere: no chart or prediction may be read without knowing whether it came from real
ultrasound or from the simulated phantoms, so every page labels its data from the same facts.
Caches are keyed by the data setting and image size, never by the environment alone, so tests and
users who move BUSADV_DATA never see a stale dataset.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import streamlit as st
from PIL import Image

from busadv.app.markdown import plain
from busadv.data import (
    DATA_ENV,
    DEFAULT_COUNTS,
    MAX_DECODE_PIXELS,
    SIMULATED_SOURCE,
    DatasetError,
    ImageRejected,
    ImageSet,
    class_counts,
    data_setting,
    decode_image,
    find_busi_root,
    load_dataset,
)
from busadv.data.decode import READ_ERRORS

SIMULATED_LABEL = SIMULATED_SOURCE  # "Simulated phantoms (not clinical images)"


@dataclass(frozen=True)
class DataFacts:
    """Name, kind and per-class counts of the active data, or why its folder cannot be used."""

    simulated: bool
    source: str
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    @property
    def images(self) -> int:
        return sum(self.counts.values())

    @property
    def counts_text(self) -> str:
        return ", ".join(f"{n} {c}" for c, n in self.counts.items())

    @property
    def label(self) -> str:
        """How charts and warnings name these images."""
        return SIMULATED_LABEL if self.simulated else "real BUSI images"


@st.cache_data(ttl=60, show_spinner=False)
def _facts(data: str | None) -> DataFacts:
    if not data:
        return DataFacts(simulated=True, source=SIMULATED_LABEL, counts=dict(DEFAULT_COUNTS))
    try:
        return DataFacts(simulated=False, source=f"BUSI at {find_busi_root(data)}", counts=class_counts(data))
    except DatasetError as exc:
        return DataFacts(simulated=False, source=data, error=str(exc))


def dataset_facts() -> DataFacts:
    """Facts about the active data ($BUSADV_DATA, else the phantoms), counted from file names only."""
    return _facts(data_setting())


def dataset_banner(compact: bool = False) -> DataFacts:
    """Say which images are active; phantoms are always called simulated and not clinical."""
    facts = dataset_facts()
    if facts.error:
        st.error(f"**The data folder in ${DATA_ENV} cannot be used.** {plain(facts.error)} "
                 f"Unset {DATA_ENV} to use the simulated phantoms instead.", icon=":material/block:")
    elif facts.simulated:
        extra = "" if compact else (" They are generated on this machine, so nothing is downloaded. "
                                    f"Set {DATA_ENV} to an unzipped BUSI folder to use real ultrasound.")
        st.info(f"**{SIMULATED_LABEL}**: {facts.images} images ({facts.counts_text}).{extra}",
                icon=":material/science:")
    else:
        st.success(f"**Real breast ultrasound — {plain(facts.source)}**: {facts.images} images ({facts.counts_text}).",
                   icon=":material/medical_services:")
    return facts


def sidebar_dataset_label() -> None:
    """One line in the sidebar of every page, so no chart is read without knowing its data."""
    facts = dataset_facts()
    with st.sidebar:
        if facts.error:
            st.error(f"Data folder unusable ({DATA_ENV})")
        elif facts.simulated:
            st.caption(f":material/science: Data: **{SIMULATED_LABEL}**")
        else:
            st.caption(f":material/medical_services: Data: **{plain(facts.source)}** ({facts.images} images)")


@st.cache_resource(max_entries=4, show_spinner="Loading images…")
def _images(data: str | None, image_size: int) -> ImageSet:
    return load_dataset(data, image_size)


def load_images(image_size: int) -> ImageSet:
    """The active dataset at one image size, decoded once per server (read-only afterwards)."""
    return _images(data_setting(), image_size)


def image_key(content: bytes | np.ndarray | str) -> str:
    """A short content hash: the identity of an uploaded image across reruns and sessions."""
    if isinstance(content, str):
        content = content.encode()
    elif isinstance(content, np.ndarray):
        content = content.tobytes()
    return hashlib.sha1(content).hexdigest()[:16]


UPLOAD_ERRORS: tuple[type[BaseException], ...] = (*READ_ERRORS, ImageRejected, Image.DecompressionBombError)


def decode_upload(content: bytes, size: int) -> tuple[np.ndarray | None, str | None]:
    """(uint8 [size, size] grayscale image, None) or (None, a message that says what is wrong)."""
    if not content:
        return None, "The file is empty."
    try:
        return decode_image(content, size), None
    except ImageRejected as exc:
        return None, f"This image cannot be used: {exc}."
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # Pillow's own check, at open
        return None, (f"This image cannot be used: it has more than {MAX_DECODE_PIXELS // 1_000_000} million "
                      "pixels, far more than any ultrasound frame.")
    except UPLOAD_ERRORS as exc:
        return None, (f"This file is not a readable PNG or JPEG image ({type(exc).__name__}). "
                      "Upload an ultrasound image saved as PNG or JPEG.")
