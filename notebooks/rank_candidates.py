# %% [markdown]
# # Rank candidate molecules
#
# Score a candidate set with a trained model and medicinal-chemistry context, combine the
# terms into one score, and look at the best molecules. The same steps as
# `python -m discovery.rank`; here the candidates are 300 approved drugs and the model a
# small ESOL solubility network trained on the spot. Percent-format script (jupytext).

# %%
import os
import tempfile
from pathlib import Path

import polars as pl
from hydra import compose, initialize_config_dir

import discovery
from discovery.rank import run_ranking
from discovery.train import run_training
from featurestore.datasets import load_dataset

CONF = str(Path(discovery.__file__).resolve().parents[1] / "conf")
work = Path(tempfile.mkdtemp(prefix="rank-"))
store = ["store.progress=false", "store.n_jobs=1", f"store.root={os.environ.get('FEATURESTORE_ROOT') or work / 'store'}"]


def config(app: str, *overrides: str):
    with initialize_config_dir(CONF, version_base="1.3"):
        return compose(app, overrides=[*store, *overrides])


# %% [markdown]
# ## A solubility model to rank with (ECFP + MLP, 2 members for an uncertainty)

# %%
run_training(config("train", "data=esol", "data.max_rows=500", "model=ecfp_mlp", "ensemble=2", "trainer=fast", "trainer.num_threads=1"),
             work / "esol")

# %% [markdown]
# ## Candidates: a CSV with a bad row and a duplicate (both kept and reported)

# %%
drugs = load_dataset("drugs").head(300).select("name", "smiles")
candidates = pl.concat([drugs, pl.DataFrame({"name": ["typo", "aspirin again"],
                                             "smiles": ["CC(=O)Oc1ccccc1C(=O", "CC(=O)Oc1ccccc1C(=O)O"]})])
candidates.write_csv(work / "candidates.csv")

# %% [markdown]
# ## Rank: predicted solubility (with ensemble spread and applicability domain), QED, SA,
# rule-of-five and Veber violations, PAINS/Brenk alerts, combined by the `esol_solubility` score

# %%
ranked = run_ranking(config("rank", f"input.path={work / 'candidates.csv'}", "score=esol_solubility",
                            f"checkpoints=[{{path: {work / 'esol'}, name: esol}}]", "progress=false"),
                     work / "ranked")
print(ranked.select("rank", "name", "score", "pred_esol", "std_esol", "in_domain_esol", "qed", "sa_score",
                    "pains_alerts", "brenk_alerts", "error").head(10))
print(ranked.filter(pl.col("error").is_not_null()).select("rank", "name", "error"))
assert ranked.height == candidates.height and ranked["rank"][-1] == ranked.height
assert ranked.filter(pl.col("name") == "typo")["score"].item() is None  # bad rows rank last, with the reason

# %% [markdown]
# ## The top of the list (also `top.png` / `top.svg` in the run folder)

# %%
from PIL import Image  # noqa: E402

top = Image.open(work / "ranked" / "top.png")
print(work / "ranked" / "top.png", top.size)
top
