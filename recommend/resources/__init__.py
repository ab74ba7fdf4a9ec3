"""Medical resource recommendation over PubMed (issue 6): ``python -m recommend.resources``.

- :mod:`recommend.resources.catalog`: the shipped PubMed catalog, a user's CSV/JSONL/parquet catalog
- :mod:`recommend.resources.retrieval`: ``ResourceIndex`` (bm25s BM25, MeSH expansion and overlap, TF-IDF + SVD)
- :mod:`recommend.resources.queries`: query text for a drug, a patient, free text (never MeSH)
- :mod:`recommend.resources.evaluate`: relevance from PubMed's indexing; Recall@K, NDCG@K, MRR
- :mod:`recommend.resources.run`: the Hydra app's job
"""
