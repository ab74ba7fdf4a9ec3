# %% [markdown]
# # Train and compare property models
#
# Train a graph network and the classical ECFP baseline on ESOL (aqueous solubility, log mol/L)
# through the same code path as `python -m discovery.train`, compare the runs in one table,
# and reload a checkpoint to predict new molecules. Small settings so it runs in a minute on
# CPU; drop `data.max_rows` and `trainer=fast` for real runs. Percent-format script
# (jupytext): open it as a notebook or run it with `python`.

# %%
import os
import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir

import discovery
from discovery.checkpoint import load_predictor, save_ensemble
from discovery.train import run_training
from featurestore import FeatureStore
from featurestore.report import render_report
from featurestore.runs import collect_runs, plot_runs

CONF = str(Path(discovery.__file__).resolve().parents[1] / "conf")
work = Path(tempfile.mkdtemp(prefix="train-compare-"))
store_root = os.environ.get("FEATURESTORE_ROOT") or str(work / "store")


def train(name: str, *overrides: str) -> dict:
    """One training run (what the Hydra app does), into work/<name>."""
    with initialize_config_dir(CONF, version_base="1.3"):
        cfg = compose("train", overrides=["data=esol", "data.max_rows=300", "trainer=fast", "trainer.num_threads=1",
                                          "store.progress=false", "store.n_jobs=1", f"store.root={store_root}",
                                          *overrides])
    return run_training(cfg, work / name)


# %% [markdown]
# ## Two models, two seeds each, the same random split per seed

# %%
for seed in (0, 1):
    train(f"dmpnn_seed{seed}", "model=dmpnn", "model.hparams.hidden=64", "trainer.max_epochs=15", f"seed={seed}")
    train(f"ecfp_svr_seed{seed}", "model=ecfp_svr", f"seed={seed}")

# %% [markdown]
# ## Every run in one table (the `runs` command does the same from a shell)

# %%
runs = collect_runs(work)
table = runs.select("config.model.name", "seed", "metrics.test.rmse", "metrics.test.r2", "metrics.wall_seconds")
print(table)
assert table.height == 4 and table["metrics.test.rmse"].is_not_null().all()
plot_runs(runs, "metrics.test.rmse", "config.model.name", work / "comparison.png")

# %% [markdown]
# ## Reload a checkpoint (weights + plain JSON, no pickle) and predict new molecules

# %%
predictor = load_predictor(work / "dmpnn_seed0")
store = FeatureStore(store_root, n_jobs=1, progress=False)
predictions = predictor.predict(["CCO", "c1ccccc1", "CC(=O)Oc1ccccc1C(=O)O", "not a smiles"], store)
print(predictions)
assert predictions["prediction"][0] > predictions["prediction"][1]  # ethanol dissolves better than benzene

# %% [markdown]
# ## Runs of a sweep as one ensemble
# A list of checkpoints (runs on the same data, e.g. the seeds of `-m seed=0,1`, trained in parallel) predicts
# as one ensemble: the mean of all members, and their spread as `std`. `discovery.rank`, `predict_targets` and
# `oracle=checkpoint` take the same list.

# %%
ensemble = load_predictor([work / "dmpnn_seed0", work / "dmpnn_seed1"])
both = ensemble.predict(["CCO", "c1ccccc1"], store)
print(both)
assert len(ensemble.members) == 2 and both["std"].is_not_null().all()

# %% [markdown]
# `save_ensemble` copies the runs into one folder (checkpoints plus the training data the ranking apps read),
# which then loads as the same ensemble wherever a checkpoint is read.

# %%
saved = save_ensemble([work / "dmpnn_seed0", work / "dmpnn_seed1"], work / "dmpnn_ensemble")
assert load_predictor(saved).predict(["CCO", "c1ccccc1"], store).equals(both)

# %% [markdown]
# ## A self-contained HTML report of a run (the apps write one into every run folder)

# %%
report = render_report(work / "dmpnn_seed0")
print(report, report.stat().st_size // 1024, "KiB")
