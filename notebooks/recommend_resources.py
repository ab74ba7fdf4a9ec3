# %% [markdown]
# # Recommend medical resources (PubMed abstracts) for a query, a drug or a patient
#
# BM25 retrieval (bm25s) over title + abstract of the PubMed citations shipped in `data/`,
# with the matched words as explanations; the same index answers a free-text query, a drug
# (its name, with synonyms and ChEBI definition as weighted context; never its MeSH terms)
# and a patient (their drugs and conditions). Here on the first 4,000 abstracts so it runs in
# seconds; `python -m recommend.resources` indexes all 33,272. Percent-format script (jupytext).

# %%
import polars as pl

from recommend.resources.catalog import load_pubmed_catalog
from recommend.resources.queries import drug_query, drug_texts, eunomia_patient, find_drug, patient_query
from recommend.resources.retrieval import IndexConfig, ResourceIndex

catalog = load_pubmed_catalog().head(4000)
index = ResourceIndex.build(catalog, IndexConfig(svd_components=64))
print(index.n_docs, "documents;", {k: round(v, 1) for k, v in index.build_seconds.items()}, "s to index")

# %% [markdown]
# ## Free text

# %%
hits = index.search("breast cancer chemotherapy", k=5)
print(hits.select("rank", "title", "score", "matched_terms"))
assert hits.height == 5 and {"breast", "cancer"} <= set(hits["matched_terms"][0])

# %% [markdown]
# ## A drug: its name is the query, its synonyms and definition add weighted context

# %%
drugs, source = drug_texts()
print(source)
metformin = find_drug(drugs, "metformin")
context = drug_query(metformin["name"], metformin["synonyms"], metformin["definition"], ("synonyms", "definition"))
print(index.search(metformin["name"], k=5, context=context, context_weight=0.2).select("rank", "title", "matched_terms"))

# %% [markdown]
# ## A patient from the Eunomia OMOP cohort (Synthea-generated): their drugs and conditions

# %%
drug_names, condition_names = eunomia_patient(6)
print(drug_names[:5], condition_names[:5])
print(index.search(patient_query(drug_names, condition_names), k=5).select("rank", "title", "matched_terms"))

# %% [markdown]
# ## The embedding retriever (TF-IDF + truncated SVD) for comparison

# %%
print(index.search("breast cancer chemotherapy", k=5, method="svd").select("rank", "title", "score"))
