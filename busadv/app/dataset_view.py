"""The Dataset page's pieces: what the active images are, and the copies a split must keep together."""

from __future__ import annotations

import streamlit as st

from busadv.app.dataset import data_setting
from busadv.app.layout import flow, plain, readout
from busadv.data import NEAR_DUPLICATE_BITS, ImageSet, dataset_summary, load_dataset, members
from busadv.data.duplicates import group_spread

THUMBNAIL_SIZE = 128


@st.cache_resource(max_entries=2, show_spinner="Decoding the images and comparing every pair…")
def _images(data: str | None) -> ImageSet:
    return load_dataset(data, THUMBNAIL_SIZE)


def images() -> ImageSet:
    return _images(data_setting())


def facts(dataset: ImageSet) -> None:
    summary = dataset_summary(dataset)
    with flow():
        readout("Images", f"{summary['images']}",
                note=plain(", ".join(f"{n} {c}" for c, n in summary["counts"].items())))
        readout("Always answering the commonest class", f"{summary['majority_rate']:.0%} accuracy",
                help="What a model scores by answering one class for every image: the floor every accuracy must beat.")
        readout("Near-duplicate groups", f"{summary['near_duplicate_groups']}",
                help="Scans saved more than once (other calipers, crops or text): a split keeps each group on "
                     "one side.",
                note=f"{summary['images_in_near_duplicate_groups']} images; "
                     f"{summary['duplicate_images']} byte-identical duplicate(s)")
        readout("Filed under two classes", f"{len(summary['label_conflicts'])} groups",
                note="copies of one scan that carry different labels: at least one label is wrong")
    if summary["skipped"]:
        st.warning("Unreadable files skipped: " + plain(", ".join(summary["skipped"][:20])))


def groups(dataset: ImageSet, limit: int) -> None:
    """Thumbnails of each group side by side: groups filed under different classes first."""
    found = members(dataset.near_groups)
    if not found:
        st.info("No copies or near-copies in these images." + (
            " (The simulated phantoms are all different by construction.)" if dataset.simulated else ""))
        return
    conflicting = [g for g in found if len({int(dataset.labels[i]) for i in g}) > 1]
    ordered = conflicting + [g for g in found if g not in conflicting]
    st.caption(f"{len(found)} groups, {len(conflicting)} of them filed under different classes (shown first). "
               f"Showing {min(limit, len(ordered))}.")
    for group in ordered[:limit]:
        classes = sorted({dataset.classes[int(dataset.labels[i])] for i in group})
        with st.container(border=True):
            heading = f"**{len(group)} images**: " + plain(", ".join(classes))
            if len(classes) > 1:
                heading = f":red-badge[different labels] {heading}"
            if dataset.hashes is not None:  # within the group only: an N x N matrix of 10,000 images is 800 MB
                heading += f" · hashes differ by at most {group_spread(dataset.hashes, group)} bits"
            st.markdown(heading)
            with flow(gap="small"):
                for i in group[:8]:
                    st.image(dataset.images[i, 0].numpy(), width=150,
                             caption=plain(f"{dataset.names[i]} ({dataset.classes[int(dataset.labels[i])]})"))


def threshold_note() -> None:
    st.caption(f"Near-duplicates: perceptual hashes (pHash, 64 bits) at most {NEAR_DUPLICATE_BITS} bits apart, "
               "joined transitively. On BUSI, nearest-neighbour distances fall in two clusters (0-12 and 14-22 "
               f"bits); every pair at {NEAR_DUPLICATE_BITS} bits or less that we viewed was the same scan with other "
               "calipers, crops or text, and some pairs at 12 bits were different lesions.")
