"""Results: accuracy with error bars (mean ± std over seeds) from finished jobs, as in the seed study."""

from __future__ import annotations

import streamlit as st

from busadv import plots, ui
from busadv.attacks import Attack, format_epsilon
from busadv.experiments import diagnose, read_rows_csv, rows_to_csv, summarize
from busadv.workflows import result_rows

ui.page_setup("Results")
st.title("Results")
st.markdown("Accuracy on the clean and on the perturbed test set, standard versus adversarially trained models, "
            "as mean ± standard deviation over repeated runs (seeds). Drawn from finished jobs.")
store = ui.job_store()
store.reap()

finished = [j for j in store.list(limit=500) if j.status == "done" and (j.result or {}).get("rows")]
with st.expander("Add rows from a results CSV (written by the CLI or exported here)"):
    uploaded = st.file_uploader("Results CSV", type=["csv"], key="rows_csv")
extra_rows: list[dict] = []
if uploaded is not None:
    try:
        extra_rows = read_rows_csv(uploaded.getvalue().decode("utf-8-sig"))
    except (ValueError, UnicodeDecodeError) as exc:
        st.error(f"{uploaded.name}: {exc}")

if not finished and not extra_rows:
    st.info("No results yet. Train, evaluate or run an experiment on the **Jobs** page; its rows appear here "
            "when it finishes.")
    st.page_link(ui.JOBS_PAGE, label="Go to Jobs", icon=":material/settings:")
    st.stop()

by_id = {j.id: j for j in finished}
chosen = st.multiselect("Jobs to include", list(by_id), default=list(by_id), key="jobs",
                        format_func=lambda i: f"job {i}: {ui.describe_job(by_id[i])}")
# Newest job first: when two jobs report the same checkpoint (or run) under the same attack and ε,
# result_rows keeps the newest one, so no run is counted twice. Each row is tagged with its job.
results = [{"rows": [dict(r, job=i) for r in by_id[i].result["rows"]]} for i in sorted(chosen, reverse=True)]
rows = result_rows(results)
dropped = sum(len(r["rows"]) for r in results) - len(rows)
rows += extra_rows
if dropped:
    st.caption(f"{dropped} row(s) left out: the same checkpoint under the same attack and ε was reported by "
               "more than one job (the newest job's row is kept, so no run is counted twice).")
if not rows:
    st.info("Choose at least one job.")
    st.stop()

# Never pool simulated and real images in one chart.
sources = sorted({str(r.get("data_source", "unknown")) for r in rows})
source = sources[0] if len(sources) == 1 else st.radio("Data", sources, horizontal=True, key="source")
rows = [r for r in rows if str(r.get("data_source", "unknown")) == source]
if any(r.get("simulated") for r in rows):
    st.info(f"**{ui.SIMULATED_LABEL}**: these numbers describe the simulated data set, not clinical performance.",
            icon=":material/science:")
else:
    st.caption(f"Data: {source}")

summary = summarize(rows)
warnings = diagnose(summary)
if len(warnings) == 1:
    st.warning(f"**Check this result.** {warnings[0]}", icon=":material/warning:")
elif warnings:  # one box, so that five notes on one model do not push the charts off the screen
    st.warning(f"**Check these {len(warnings)} results.**\n" + "\n".join(f"- {w}" for w in warnings),
               icon=":material/warning:")

attacks = sorted({r["attack"] for r in rows if r["attack"] != "none"})
if not attacks:
    st.info("These jobs hold only clean results; evaluate under an attack to compare.")
    st.stop()
c = st.columns(3)
attack = c[0].selectbox("Attack", attacks, format_func=lambda a: Attack(a).label, key="attack")
archs = sorted({r["arch"] for r in rows})
arch = c[1].selectbox("Model", archs, key="arch") if len(archs) > 1 else archs[0]
metric = c[2].selectbox("Measure", ["accuracy", "malignant_missed_rate", "recall_malignant"], key="metric",
                        format_func=plots.METRIC_NAMES.get)

st.plotly_chart(plots.accuracy_bars(summary, attack=attack, arch=arch, metric=metric), key="bars")
runs = max((s["n_runs"] for s in summary), default=0)
st.caption("Bars: mean over seeds; error bars: ± one sample standard deviation; dots: single seeds (hover for "
           "each seed). An adversarially trained model appears in the group of the ε it was trained at."
           + (" With one run per model there is no spread to show: repeat with more seeds." if runs < 2 else ""))
st.plotly_chart(plots.accuracy_curve(summary, attack=attack, arch=arch, metric=metric), key="curve")

# ------------------------------------------------------------------ confusion under attack
st.subheader("Confusion matrix under attack")
models = sorted({(r["arch"], r["train_mode"], float(r["train_epsilon"])) for r in rows if r["arch"] == arch},
                key=lambda m: (m[1] != "standard", m[1], m[2]))  # the standard model first
c = st.columns(2)
model = c[0].selectbox("Trained model", models, key="cm_model", format_func=lambda m: plots.model_label(*m))
epsilons = sorted({float(r["test_epsilon"]) for r in rows if r["attack"] == attack
                   and (r["arch"], r["train_mode"], float(r["train_epsilon"])) == model})
if epsilons:
    eps = c[1].selectbox("Test ε", epsilons, key="cm_eps", format_func=format_epsilon)
    pick = [r for r in rows if (r["arch"], r["train_mode"], float(r["train_epsilon"])) == model and r.get("confusion")]
    clean = plots.sum_confusions([r["confusion"] for r in pick if r["attack"] == "none"])
    attacked = plots.sum_confusions([r["confusion"] for r in pick if r["attack"] == attack
                                     and abs(float(r["test_epsilon"]) - eps) < 1e-9])
    n_runs = len({r.get("checkpoint") or r.get("run") or r["seed"] for r in pick})  # a seed can recur across jobs
    left, right = st.columns(2)
    if clean:
        missed, total = plots.malignant_missed(clean)
        left.plotly_chart(plots.confusion_heatmap(clean, title=f"Clean test set: {missed} of {total} malignant missed"),
                          key="cm_clean")
    if attacked:
        missed, total = plots.malignant_missed(attacked)
        right.plotly_chart(plots.confusion_heatmap(
            attacked, title=f"{Attack(attack).label}, ε={format_epsilon(eps)}: {missed} of {total} malignant missed"),
            key="cm_attacked")
    st.caption(f"Counts pooled over {n_runs} run(s); each row's percentages add to 100%. Red boxes: malignant "
               "images called benign or normal, the error that delays treatment.")
else:
    c[1].caption("This model was not tested under this attack.")

# ------------------------------------------------------------------ table and export
with st.expander("Summary table (mean ± std per group)"):
    st.dataframe([{k: v for k, v in s.items() if not k.endswith("_values")} for s in summary], hide_index=True)
st.download_button("Download these rows as CSV", data=rows_to_csv(rows), file_name="busadv-results.csv",
                   mime="text/csv", key="download", icon="⬇️")
