"""Results: balanced accuracy (and other measures) with error bars over seeds, from the results store.

Every train, evaluate and experiment writes its rows to the store, whoever started it (a job or the
CLI), so everything finished appears here; a results file from elsewhere can be added for comparison.
"""

from __future__ import annotations

import streamlit as st

from busadv import plots
from busadv.app import comparison, dataset, image_robustness, layout, results, robustness_views, tradeoff
from busadv.results import HEADLINE, rows_to_csv, summarize, unique_rows

layout.page_setup("Results")
st.title("Results")
st.markdown("How well models tell the classes apart on clean and on perturbed test images, standard versus "
            "adversarially trained, as mean ± standard deviation over repeated runs (seeds). Every finished "
            "training, evaluation and experiment lands here.")

stored, problems = results.stored_rows()
with st.expander("Add rows from a results file (CSV or JSON written by busadv, e.g. exported here)"):
    uploaded = st.file_uploader("Results file", type=["csv", "json"], key="rows_csv")
extra = results.uploaded_rows(uploaded.name, uploaded.getvalue()) if uploaded is not None else []
rows = unique_rows(extra + stored)  # a file exported here and added again counts each run once
if len(rows) < len(extra) + len(stored):
    st.caption(f"{len(extra) + len(stored) - len(rows)} row(s) left out: the same model under the same test "
               "was reported more than once (the newest is kept, so no run is counted twice).")

if not rows:
    st.info("No results yet. Train, evaluate or run an experiment on the **Jobs** page (or with "
            "`python -m busadv`); its rows appear here when it finishes.")
    st.page_link(layout.JOBS_PAGE, label="Go to Jobs", icon=":material/model_training:")
    st.stop()

# Never pool simulated and real images in one chart.
names = results.sources(rows)
source = (names[0] if len(names) == 1
          else st.radio("Data", names, horizontal=True, key="source", format_func=layout.plain))
every_row = results.from_source(rows, source)
rows = [r for r in every_row if r.severity is None]  # corruptions by severity level have their own section below
if any(r.simulated for r in rows):
    st.info(f"**{dataset.SIMULATED_LABEL}**: these numbers describe the simulated data set, not clinical "
            "performance.", icon=":material/science:")
else:
    st.caption(f"Data: {layout.plain(source)}")

attacks = results.attacks_in(rows)
if not attacks:
    st.info("These runs hold only clean results; evaluate under an attack to compare.")
    st.stop()
pick = layout.flow(gap="medium")
attack = pick.selectbox("Attack", attacks, index=results.default_attack(attacks), key="attack",
                        format_func=results.attack_choice_label, width=340)
archs = results.archs_in(rows)
arch = (pick.selectbox("Model", archs, key="arch", width=300, format_func=layout.plain) if len(archs) > 1
        else archs[0])
metric = pick.selectbox("Measure", HEADLINE, key="metric", format_func=plots.metric_name, width=300,
                        help="Balanced accuracy: the mean of the per-class recalls, 33% by chance whatever the "
                             "class sizes. Accuracy: the share answered correctly. Malignant sensitivity: the share "
                             "of malignant images called malignant.")
toggles = layout.flow(gap="large")
show_collapsed = toggles.toggle("Show collapsed runs", value=True, key="show_collapsed",
                             help="Runs that answer one class for at least 90% of the images, drawn as red crosses.")
exclude = toggles.toggle("Leave out runs that collapsed on clean images", value=False, key="exclude_collapsed",
                      help="A run that answers one class for everything even without an attack has learned nothing; "
                           "leaving it out shows what the other runs do (the count of left-out runs is in the "
                           "table below).")
shown = [r for r in rows if r.arch == arch]
groups = summarize(shown, exclude_collapsed=exclude)

results.show_checks(shown, problems)
st.plotly_chart(layout.legend_below(plots.accuracy_bars(groups, attack=attack, metric=metric,
                                                       show_collapsed=show_collapsed)), key="bars")
runs = max((g.n_runs for g in groups), default=0)
st.caption("Each trained model once on clean test images (light bars, left), then under the attack at each ε "
           "(hatched). Bars: mean over runs; error bars: ± one sample standard deviation (how much the seeds "
           "disagree); dots: single runs (hover for the seed and the full recipe); red crosses: runs that "
           "collapsed. Dashed line: what a model scores by always giving the same answer. An adversarially "
           "trained model appears in the group of the ε it was trained at."
           + (" With one run per model there is no spread to show: repeat with more seeds." if runs < 2 else ""))
results.pgd_caption(groups, metric)
st.plotly_chart(layout.legend_below(plots.accuracy_curve(groups, attack=attack, metric=metric,
                                                        show_collapsed=show_collapsed)), key="curve")

st.subheader("Confusion matrix under attack")
results.confusion_section(groups, attack)

st.subheader("Clean versus robust, one point per recipe")
image_robustness.frontier_section(groups)

st.subheader("Which training ε buys how much robustness")
tradeoff.tradeoff_section(shown)

st.subheader("Two recipes compared, seed by seed")
comparison.comparison_section(shown)

st.subheader("Which images flip first")
image_robustness.flips_section(source)

with st.expander("Summary table (mean ± std per model and test)"):
    st.caption("One line per trained model and test: the mean over runs ± the sample standard deviation (how much "
               "the seeds disagree); collapsed: runs that answer one class for at least 90% of the images.")
    st.dataframe(results.summary_table(groups), hide_index=True)
st.download_button("Download these rows as CSV", data=rows_to_csv(every_row), file_name="busadv-results.csv",
                   mime="text/csv", key="download", icon=":material/download:")

# Beyond white-box attacks: ordinary scanner variation and attacks carried over from other models.
st.header("Scanner variation and transfer attacks")
st.subheader("Ordinary scanner variation (not an attack)")
robustness_views.corruption_section(every_row)
st.subheader("Transfer: an attack computed on one model, tested on another")
robustness_views.transfer_section(source)
