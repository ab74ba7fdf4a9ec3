# %% [markdown]
# # Recommend drugs from usage records
#
# Simulate a small **synthetic** OMOP cohort from the real drug catalog, fit ALS and EASE on a
# global time split, look at one patient's history beside their recommendations with the
# explanations (and newstart's, which also reads the patient's diagnoses), then ask the content model for
# "drugs like atorvastatin" with its reasons, summaries and keywords. The same functions as
# `python -m recommend.simulate` and `python -m recommend.run`; a real OMOP `DRUG_EXPOSURE` table drops in
# through `usage=omop`. Percent-format script (jupytext).

# %%
import os
import tempfile
from pathlib import Path

import polars as pl
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import recommend
from featurestore.datasets import load_dataset
from recommend.predict import predict_recommend
from recommend.run import run_recommend
from recommend.simulate import load_condition_atc, simulate, write_synthetic

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit's advice for its ALS
CONF = str(Path(recommend.__file__).resolve().parents[1] / "conf")
work = Path(tempfile.mkdtemp(prefix="recommend-"))

# %% [markdown]
# ## A synthetic cohort (every file and table says so)

# %%
with initialize_config_dir(CONF, version_base="1.3"):
    params = OmegaConf.to_container(compose("simulate", overrides=["n_patients=3000", "seed=0"]), resolve=True)
cohort = simulate(params, load_dataset("drugs"), load_condition_atc())
write_synthetic(cohort, work / "cohort", params)
print({name: table.height for name, table in cohort.tables().items()})
sorted(p.name for p in (work / "cohort").iterdir())

# %% [markdown]
# ## Fit and evaluate on a time split: task (a) every drug after the cutoff, (b) new drugs only

# %%
def run(recommender: str, *overrides: str) -> dict:
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("recommend", overrides=[
            "usage=simulated", f"usage.cohort={work / 'cohort'}",
            f"recommender={recommender}", *overrides])
    return run_recommend(cfg, work / recommender, label=recommender)


results = {name: run(name) for name in ("popularity", "als", "ease")}
table = pl.DataFrame([{"model": name, "task": task, "ndcg@10": values["ndcg@10"], "recall@20": values["recall@20"]}
                      for name, result in results.items()
                      for task, values in result["metrics"]["test"]["tasks"].items()])
print(table)
assert table["ndcg@10"].is_between(0, 1).all()

# %% [markdown]
# ## One patient: their record around the cutoff, and what EASE recommends at the cutoff
# (with the past drugs behind each recommendation); drugs started after the cutoff are what the
# evaluation hopes to see recommended.

# %%
cutoff = results["ease"]["metrics"]["test"]["split"]["reference"]
recommendations = pl.read_parquet(work / "ease" / "recommendations.parquet")
person = recommendations["person_id"][0]
history = (cohort.drug_exposure.filter(pl.col("person_id") == person)
           .join(load_dataset("drugs").select(pl.col("drug_id").alias("drug_source_value"), "name"),
                 on="drug_source_value", how="left")
           .group_by("name").agg(first=pl.col("drug_exposure_start_date").min(), fills=pl.len()).sort("first")
           .with_columns(when=pl.when(pl.col("first").cast(pl.String) < cutoff[:10]).then(pl.lit("before cutoff"))
                         .otherwise(pl.lit("after cutoff"))))
print(f"patient {person} (synthetic), cutoff {cutoff[:10]}:")
print(history)
print(recommendations.filter(pl.col("person_id") == person).select("rank", "drug_name", "atc_code", "score",
                                                                  "explanation"))

# %% [markdown]
# ## Patients the model never saw
# `recommend.predict` ranks drugs for new records with a trained run folder: the same readers and catalog mapping
# (here free-text drug names), explanations and interaction screen. ALS would re-solve each new patient's factors.

# %%
pl.DataFrame({"user": ["new-1", "new-1", "new-2", "new-2"],
              "item": ["metformin", "lisinopril", "atorvastatin", "amlodipine"],
              "timestamp": ["2019-01-01", "2019-03-01", "2019-02-01", "2019-02-15"]}).write_csv(work / "new.csv")
with initialize_config_dir(CONF, version_base="1.3"):
    cfg = compose("recommend_predict", overrides=[f"model_run={work / 'ease'}", "usage=csv",
                                                  f"usage.path={work / 'new.csv'}", "usage.item_kind=name"])
predict_recommend(cfg, work / "predict")
print(pl.read_parquet(work / "predict" / "recommendations.parquet").select("person_id", "rank", "drug_name",
                                                                           "explanation").head(6))

# %% [markdown]
# ## New drugs from the whole record: newstart with the patient's diagnoses, age band and sex
# `newstart` is trained on task (b) itself; `covariates` add the OMOP PERSON and CONDITION_OCCURRENCE
# tables (cut at the cutoff). `patient_explanation` lists the features that raise each drug most.

# %%
newstart = run("newstart", "recommender.covariates=[sex,age,conditions]")
print({"newstart + covariates, task b ndcg@10": round(newstart["metrics"]["test"]["tasks"]["new"]["ndcg@10"], 4),
       "ease": round(results["ease"]["metrics"]["test"]["tasks"]["new"]["ndcg@10"], 4)})
with pl.Config(fmt_str_lengths=80, tbl_width_chars=200):
    print(pl.read_parquet(work / "newstart" / "recommendations.parquet").filter(pl.col("person_id") == person)
          .select("rank", "drug_name", "explanation", "patient_explanation").head(5))

# %% [markdown]
# ## Content-based: drugs like atorvastatin, and why
# Each drug's generated summary and keywords come from the feature store's `drug_summary` view;
# `shared_keywords` are the keywords a neighbour shares with atorvastatin.

# %%
run("content")
from recommend.models import load_model  # noqa: E402

model = load_model(work / "content" / "model")
items = pl.read_parquet(work / "content" / "items.parquet")
atorvastatin = items.filter(pl.col("name") == "Atorvastatin")["column"].item()
print(model.descriptions([items["item"][atorvastatin]]).row(0, named=True))
ids, scores = model.similar_items([atorvastatin], N=5)
neighbours = model.descriptions(items["item"][ids[0]].to_list()).with_columns(
    name=items["name"][ids[0]], score=pl.Series(scores[0]),
    shared_keywords=pl.Series([model.why_similar(atorvastatin, int(other))["shared_keywords"] for other in ids[0]]))
with pl.Config(fmt_str_lengths=120, tbl_width_chars=200):
    print(neighbours.select("name", "score", "shared_keywords", "summary"))
reasons = model.why_similar(atorvastatin, int(ids[0][0]))
print(reasons)
assert reasons["atc"]["code"] == "C10AA"  # statins: HMG CoA reductase inhibitors
assert "reductase" in reasons["shared_keywords"]

# %% [markdown]
# ## Cold start: hold out every interaction of 20 % of the drugs
# Behaviour models cannot score a drug nobody took in training; the hybrid scores such drugs
# from their content similarity to the patient's drugs.

# %%
cold = {name: run(name, "usage_split=cold_items", *overrides)["metrics"]["test"]["tasks"]["new"]
        for name, overrides in (("ease", []), ("content", []), ("hybrid", []))}
print({name: round(values["ndcg@10"], 4) for name, values in cold.items()})
assert cold["ease"]["ndcg@10"] == 0.0 < cold["hybrid"]["ndcg@10"]
# (the hybrid tunes alpha and cold_weight on inner folds that repeat this split: see benchmarks/content.py)
