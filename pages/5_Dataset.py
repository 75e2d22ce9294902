"""Dataset: the active images, their classes, and the copies and near-copies a split keeps on one side."""

from __future__ import annotations

import streamlit as st

from busadv.app import dataset, dataset_view, layout

layout.page_setup("Dataset")
st.title("Dataset")
st.markdown("BUSI holds the same scan more than once: byte-identical copies, and near-copies saved with other "
            "calipers, crops or text, a few of them filed under two different classes. A random split can test a "
            "model on a scan it learned from, which inflates its accuracy; busadv's default split keeps every "
            "group below on one side.")
facts = dataset.dataset_banner(compact=True)
if facts.error:
    st.stop()
images = dataset_view.images()
dataset_view.facts(images)
st.subheader("Copies and near-copies")
dataset_view.threshold_note()
limit = st.select_slider("Groups to show", [10, 25, 50, 100, 200], value=25, key="groups_shown")
dataset_view.groups(images, limit)
