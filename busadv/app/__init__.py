"""Streamlit helpers for busadv's pages, split by concern; the only package besides the pages that imports Streamlit.

Why a package: the pages (app.py and pages/*.py) should read like a description of their UI. Caches,
widgets that every page shares and the job cards live here; anything that is not about Streamlit
(parsing, estimates, summaries, diagnoses, plots) comes from the engine packages below it.

- layout: page setup, the menu, the data label in the sidebar, wrapping rows and readout tiles
- dataset: facts about the active images, the banner that names them, cached image loading, uploads
- checkpoints: the saved models (cached list, labels, the home table) and cached model loading
- explorer: the perturbation explorer, shaped like its screen (the first screen as one component, stage; one
  module per section below it; presenter mode; its caches and links)
- first_start: the demonstration model a fresh install trains by itself
- widgets: epsilon slider and lists, seed lists, choices read from the registries
- jobs: the job store, job cards, the live polling fragment, the quick-train panel
- forms: the Jobs page's settings turned into checked job configs and time estimates
- results: the Results page's rows, diagnoses, confusion matrices and summary table
"""
