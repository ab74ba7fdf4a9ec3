# %% [markdown]
# # The feature store: standardize, key, featurize once
#
# A walkthrough of `featurestore`, shared by `discovery` and `recommend`. Percent-format
# script (jupytext): open it as a notebook, or run it with `python`. The test suite executes
# it (`tests/test_notebooks.py`) with `FEATURESTORE_ROOT` pointing at a temporary folder.

# %%
import os
import tempfile

from featurestore import FeatureStore, FeatureView, fingerprint_matrix, graphs_from_frame
from featurestore.datasets import list_datasets, load_dataset

root = os.environ.get("FEATURESTORE_ROOT") or tempfile.mkdtemp(prefix="featurestore-")
store = FeatureStore(root, n_jobs=1, progress=False)
list_datasets()

# %% [markdown]
# ## Keys: InChIKeys of standardized molecules
# Salts are stripped and charges neutralized, so the sodium salt and the free acid share a
# key. A bad SMILES is an error row with the reason; the batch goes on.

# %%
keyed = store.standardize(["CC(=O)Oc1ccccc1C(=O)O", "CC(=O)[O-].[Na+]", "CC(=O)O", "not a smiles"])
print(keyed.table)
print(keyed.errors)
assert keyed.table["inchikey"][1] == keyed.table["inchikey"][2]

# %% [markdown]
# ## Feature views are computed once
# `get` returns features in request order and computes only keys it has not stored yet.

# %%
esol = load_dataset("esol").head(200)
keys = store.standardize(esol["smiles"].to_list()).keys
ecfp = FeatureView("ecfp", {"radius": 2, "n_bits": 2048})
_, first = store.get_with_stats(keys, ecfp)
frame, second = store.get_with_stats(keys, ecfp)
print(first, second, sep="\n")
assert second.computed == 0 and second.reused == len(keys)
X = fingerprint_matrix(frame)
X.shape

# %% [markdown]
# ## Graphs for PyTorch Geometric, without RDKit at training time

# %%
graphs = graphs_from_frame(store.get(keys[:5], FeatureView("graph")))
graphs[0]

# %% [markdown]
# ## What is stored
# One folder per view id (`{featurizer, params, version}` hashed), with immutable parquet
# parts and a manifest.

# %%
print(store.views())
print(store.read_entities("molecule").head())
