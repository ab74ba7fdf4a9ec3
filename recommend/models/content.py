"""Content-based drug recommender: drug-drug similarity from structure, ATC class, drug classes and text.

Views, each a similarity in [0, 1] between two items (an item without a view's data
has no value in that view):

- ``structure``: Tanimoto on ECFP bits from the feature store's ``ecfp`` view (keyed by
  the InChIKey of the standardized catalog SMILES).
- ``atc``: two codes score their deepest shared ATC level / depth (levels 1-4 = 1, 3, 4,
  5 characters; depth 4 for drugs, the class level for ``atcN`` items): C10AA vs C10AA
  = 1, C10AA vs C10AB = 3/4, C10AA vs C10BA = 1/2, C10AA vs B01AC = 0; drugs in several
  classes are compared by the best-match average of their codes (:func:`atc_similarity`).
- ``classes``: Jaccard on the EPC + MoA classes of ``data/drug_annotations.parquet``.
- ``text``: TF-IDF cosine (scikit-learn) on the annotation definition, ChEBI roles and
  MeSH actions.

Explanations also name the keywords two drugs share in the feature store's
``drug_summary`` view (read when the text view is on, for catalog drugs described by the
shipped annotations).

``classes`` and ``text`` are skipped, with a logged note, while the annotation file is
absent; a view with weight 0 is not computed. The combined similarity is the weighted
mean over the views both items have, ``S_ij = sum_v w_v s_v(i, j) / sum_v w_v`` (0 when
they share no view), so every item with any content is 1 to itself. Each item keeps its
``K`` most similar items; a patient's score is ``sum_j x_uj S_ji`` over their past drugs,
as in item-kNN, whose scoring and explanation this model reuses.

At ATC granularity (``granularity=atc1..atc4``) an item is a class: ``atc`` compares the
codes, ``classes`` / ``text`` pool the class's drugs; ``structure`` (one molecule per
item) is skipped with a logged note.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from featurestore import FeatureStore, FeatureView, drug_feature_table, fingerprint_matrix
from featurestore.datasets import data_dir, load_dataset
from featurestore.io import read_table
from featurestore.similarity import tanimoto_matrix
from recommend.mapping import ATC_LENGTH, GRANULARITIES
from recommend.models.base import FitContext, _csr_arrays, _csr_from, register_model
from recommend.models.knn import ItemKNNRecommender

log = logging.getLogger(__name__)

VIEWS = ("structure", "atc", "classes", "text")
DEFAULT_WEIGHTS = {"structure": 0.3, "atc": 0.4, "classes": 0.15, "text": 0.15}
ANNOTATION_FILE = "drug_annotations.parquet"
ANNOTATION_COLUMNS = ("drug_id", "definition", "chebi_roles", "mesh_actions", "epc_classes", "moa_classes")
N_KEYWORDS = 5
SUMMARY_VIEW = FeatureView("drug_summary")


def atc_names(drugs: pl.DataFrame) -> dict[str, str]:
    """ATC code (levels 1-4) -> name, from the catalog's level-4 codes and per-level name lists.

    The catalog lists a drug's level-k names sorted and de-duplicated, not aligned with its
    codes, so a name is assigned where a drug has exactly one code left unnamed at that level
    and one name left unassigned; repeated until nothing changes. Codes never isolated that
    way stay unnamed (explanations then show the code alone).
    """
    names: dict[str, str] = {}
    for level, length in ATC_LENGTH.items():
        rows = [
            (sorted({c[:length] for c in codes}), set(level_names))
            for codes, level_names in drugs.select("atc_codes", f"atc_level{level[-1]}_names").iter_rows()
            if codes and level_names
        ]
        changed = True
        while changed:
            changed = False
            for codes, level_names in rows:
                open_codes = [c for c in codes if c not in names]
                open_names = level_names - {names[c] for c in codes if c in names}
                if len(open_codes) == 1 and len(open_names) == 1:
                    names[open_codes[0]] = open_names.pop()
                    changed = True
    return names


def atc_similarity(codes: list[list[str]], depth: int = 4) -> np.ndarray:
    """Items × items best-match average of code similarities (0 for items without codes).

    Two codes score their deepest shared ATC level / ``depth``; each code of one item takes
    its best match in the other, and the two items' mean best matches are averaged. A drug
    that is also in a combination class (atorvastatin: C10AA, C10BA, C10BX) so stays closer
    to its own class (simvastatin: 0.875) than to a combination partner (aspirin: 0.45).
    """
    n = len(codes)
    owner = np.repeat(np.arange(n), [len(c) for c in codes])
    flat = [c for item in codes for c in item]
    if not flat:
        return np.zeros((n, n), dtype=np.float32)
    best = sp.csr_matrix((len(flat), n), dtype=np.float32)  # each code's best match in each item (× depth)
    for level, length in enumerate(ATC_LENGTH.values(), start=1):
        if level > depth:
            break
        # A code shorter than the level is a class of its own there; levels nest, so the deepest
        # shared level is the number of levels shared.
        _, prefix = np.unique([c[:length] if len(c) >= length else f"<{c}>" for c in flat], return_inverse=True)
        code_prefix = sp.csr_matrix((np.ones(len(flat), dtype=np.float32), (np.arange(len(flat)), prefix)))
        item_prefix = sp.csr_matrix((np.ones(len(flat), dtype=np.float32), (owner, prefix)),
                                    shape=(n, code_prefix.shape[1]))
        shared = (code_prefix @ item_prefix.T).tocsr()
        shared.data[:] = 1.0
        best = best + shared
    counts = np.bincount(owner, minlength=n).astype(np.float32)
    mean_of = sp.csr_matrix((1.0 / counts[owner], (owner, np.arange(len(flat)))), shape=(n, len(flat)))
    mean = (mean_of @ best).toarray() / depth  # items × items: mean best match of the row item's codes
    return (mean + mean.T) / 2


def jaccard(member: sp.csr_matrix) -> np.ndarray:
    """Items × items Jaccard of binary set rows (0 where both are empty)."""
    common = (member @ member.T).toarray().astype(np.float32)
    sizes = np.asarray(member.sum(axis=1), dtype=np.float32).ravel()
    union = sizes[:, None] + sizes[None, :] - common
    return np.divide(common, union, out=np.zeros_like(common), where=union > 0)


def _indicator(sets: list[set[str]] | list[list[str]]) -> sp.csr_matrix:
    """Binary items × vocabulary CSR of string sets (vocabulary: sorted union)."""
    vocabulary = {v: i for i, v in enumerate(sorted({x for s in sets for x in s}))}
    rows = [i for i, s in enumerate(sets) for _ in set(s)]
    cols = [vocabulary[x] for s in sets for x in set(s)]
    return sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(sets), len(vocabulary)))


def load_annotations(path: str | Path | None = None) -> pl.DataFrame | None:
    """``drug_annotations.parquet`` (default: in the data folder), or None with a logged note when absent."""
    path = Path(path) if path is not None else data_dir() / ANNOTATION_FILE
    if not path.is_file():
        log.info("content: %s not found; the classes and text views are skipped", path)
        return None
    return read_table(path, required=ANNOTATION_COLUMNS)


def item_members(items: pl.Series, granularity: str, drugs: pl.DataFrame) -> pl.DataFrame:
    """item -> catalog drug_id (one row per pair; ATC classes list their drugs)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; use one of {GRANULARITIES}")
    frame = pl.DataFrame({"item": items})
    if granularity == "ingredient":
        unknown = frame.join(drugs.select(item="drug_id"), on="item", how="anti")["item"]
        if unknown.len():
            raise ValueError(f"content (granularity=ingredient): {unknown.len()} item(s) are not catalog drug_ids, "
                             f"e.g. {unknown.head(5).to_list()}; set the model's granularity to the catalog's")
        return frame.with_columns(drug_id=pl.col("item"))
    pairs = drugs.select("drug_id", item=pl.col("atc_codes")).explode("item").drop_nulls("item").with_columns(
        pl.col("item").str.slice(0, ATC_LENGTH[granularity])).unique()
    return frame.join(pairs, on="item", how="left")


@register_model("content")
class ContentRecommender(ItemKNNRecommender):
    """Item-kNN over drug content similarity (see the module docstring).

    ``weights``: view -> weight (missing views weigh 0); ``K``: neighbours kept per item;
    ``granularity``: the run's ``catalog.granularity``; ``annotations``: path of
    drug_annotations.parquet (None: the data folder's); ``store_root``: feature store
    (None: ``$FEATURESTORE_ROOT`` or ``.featurestore``).
    """

    def __init__(self, weights: Mapping[str, float] | None = None, K: int = 100, granularity: str = "ingredient",
                 radius: int = 2, n_bits: int = 2048, annotations: str | None = None,
                 store_root: str | None = None) -> None:
        weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
        unknown = set(weights) - set(VIEWS)
        if unknown:
            raise ValueError(f"unknown content view(s) {sorted(unknown)}; use {VIEWS}")
        if any(w < 0 for w in weights.values()) or not any(w > 0 for w in weights.values()):
            raise ValueError(f"content weights must be >= 0 with at least one > 0, got {weights}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; use one of {GRANULARITIES}")
        if K < 1:
            raise ValueError("K must be >= 1")
        self.weights, self.K, self.granularity = {v: float(weights.get(v, 0.0)) for v in VIEWS}, K, granularity
        self.radius, self.n_bits, self.annotations, self.store_root = radius, n_bits, annotations, store_root
        self.items: pl.DataFrame | None = None
        self.similarity: sp.csr_matrix | None = None
        self.features: dict[str, np.ndarray] = {}

    def params(self) -> dict[str, Any]:
        return {"weights": self.weights, "K": self.K, "granularity": self.granularity, "radius": self.radius,
                "n_bits": self.n_bits, "annotations": self.annotations, "store_root": self.store_root}

    def with_context(self, context: FitContext) -> ContentRecommender:
        """Keep the catalog items (one row per matrix column: item, name, ...)."""
        self.items = context.items
        return self

    def fit(self, user_items: sp.csr_matrix) -> ContentRecommender:
        """Compute the content views of the context's items (the matrix gives only the shape)."""
        if self.items is None:
            raise ValueError("content needs the catalog items: call with_context(FitContext(items, ...)) before fit")
        if self.items.height != user_items.shape[1]:
            raise ValueError(f"{self.items.height} context items vs {user_items.shape[1]} matrix columns")
        self.features = self._features(self.items)
        self.similarity = self._neighbours(self.combined_similarity())
        self.n_items = user_items.shape[1]
        return self

    # ------------------------------------------------------------------ features
    def _features(self, items: pl.DataFrame) -> dict[str, np.ndarray]:
        drugs = load_dataset("drugs")
        members = item_members(items["item"], self.granularity, drugs)
        n = items.height
        by_item = members.group_by("item", maintain_order=True).agg(pl.col("drug_id").drop_nulls())
        member_ids = dict(by_item.iter_rows())
        ordered = [member_ids.get(item, []) for item in items["item"]]
        smiles = dict(drugs.select("drug_id", "smiles").iter_rows())
        atc = dict(drugs.select("drug_id", "atc_codes").iter_rows())
        first = [m[0] if m else None for m in ordered]  # at ingredient granularity: the item's drug
        if self.granularity == "ingredient":
            codes = [sorted(atc.get(drug) or []) for drug in first]
        else:
            codes = [[item] for item in items["item"]]
        names = atc_names(drugs)
        vocabulary = sorted({c[:length] for item in codes for c in item for length in ATC_LENGTH.values()})
        flat = [c for item in codes for c in item]
        features = {
            "items": np.asarray(items["item"].to_list(), dtype=str),
            "names": np.asarray(items["name"].to_list(), dtype=str),
            "atc_codes": np.asarray(flat, dtype=str),
            "atc_indptr": np.cumsum([0] + [len(c) for c in codes]).astype(np.int64),
            "atc_vocab": np.asarray(vocabulary, dtype=str),
            "atc_vocab_names": np.asarray([names.get(c, "") for c in vocabulary], dtype=str),
        }
        if self.weights["structure"] > 0:
            features |= self._structure(np.asarray([smiles.get(drug) or "" for drug in first], dtype=object),
                                        features["names"])
        if self.weights["classes"] > 0 or self.weights["text"] > 0:
            annotations = load_annotations(self.annotations)
            if annotations is not None:
                features |= self._annotation_views(annotations, ordered, n)
        return features | self._summary_keywords(first)

    def _summary_keywords(self, drug_ids: list[str | None]) -> dict[str, np.ndarray]:
        """Each item's ``drug_summary`` keywords (ragged: ``summary_keywords`` + ``_indptr``), or {} when the text
        view is off, the items are not catalog drugs or the annotations are not the shipped ones (the view's)."""
        if self.weights["text"] == 0:
            return {}
        if self.granularity != "ingredient" or self.annotations is not None or not (
                data_dir() / ANNOTATION_FILE).is_file():
            log.info("content: no drug_summary keywords (they describe catalog drugs from the shipped %s)",
                     ANNOTATION_FILE)
            return {}
        keywords = [k or [] for k in self.descriptions(drug_ids)["keywords"].to_list()]
        return {"summary_keywords": np.asarray([k for item in keywords for k in item], dtype=str),
                "summary_keywords_indptr": np.cumsum([0] + [len(k) for k in keywords]).astype(np.int64)}

    def descriptions(self, drug_ids: Iterable[str | None]) -> pl.DataFrame:
        """``drug_id, summary, keywords`` of catalog drugs from the store's ``drug_summary`` view (built once)."""
        store = FeatureStore(self.store_root, n_jobs=1, progress=False)
        return drug_feature_table(store, SUMMARY_VIEW, drug_ids).select("drug_id", "summary", "keywords")

    def _structure(self, smiles: np.ndarray, names: np.ndarray) -> dict[str, np.ndarray]:
        if self.granularity != "ingredient":
            log.info("content: structure view skipped at granularity %s (an item is a class, not a molecule)",
                     self.granularity)
            return {}
        # In-process: a few thousand drugs take seconds, less than starting worker processes (and
        # spawned workers would re-run a calling script or notebook that has no __main__ guard).
        store = FeatureStore(self.store_root, n_jobs=1, progress=False)
        view = FeatureView("ecfp", {"radius": self.radius, "n_bits": self.n_bits})
        present = np.flatnonzero(smiles != "")
        table = store.featurize_smiles(smiles[present].tolist(), view)
        bits = np.zeros((len(smiles), self.n_bits), dtype=np.uint8)
        ok = table["error"].is_null().to_numpy()
        bits[present[ok]] = fingerprint_matrix(table.filter(pl.col("error").is_null()))
        valid = bits.any(axis=1)
        reasons = dict(zip(present[~ok].tolist(), table.filter(pl.col("error").is_not_null())["error"].to_list()))
        for item in np.flatnonzero(~valid):
            # Logged, not raised: the item keeps its other views.
            log.info("content: %s has no fingerprint (structure view skipped for it): %s", names[item],
                     reasons.get(int(item), "no SMILES" if smiles[item] == "" else "no bit set"))
        return {"fp_bits": np.packbits(bits, axis=1), "fp_valid": valid}

    def _annotation_views(self, annotations: pl.DataFrame, members: list[list[str]], n: int) -> dict[str, np.ndarray]:
        from sklearn.feature_extraction.text import TfidfVectorizer

        rows = {r["drug_id"]: r for r in annotations.select(ANNOTATION_COLUMNS).iter_rows(named=True)}
        class_sets, texts = [], []
        for drugs in members:
            found = [rows[d] for d in drugs if d in rows]
            class_sets.append({c for r in found for c in (r["epc_classes"] or []) + (r["moa_classes"] or [])})
            texts.append(" ".join(" ".join([r["definition"] or "", *(r["chebi_roles"] or []),
                                            *(r["mesh_actions"] or [])]) for r in found))
        out: dict[str, np.ndarray] = {}
        if self.weights["classes"] > 0:
            member = _indicator(class_sets)
            out |= _csr_arrays("classes", member)
            out["class_names"] = np.asarray(sorted({c for s in class_sets for c in s}), dtype=str)
        if self.weights["text"] > 0 and any(t.strip() for t in texts):
            vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True, min_df=1)
            matrix = sp.csr_matrix(vectorizer.fit_transform(texts), dtype=np.float32)
            out |= _csr_arrays("text", matrix)
            out["terms"] = np.asarray(vectorizer.get_feature_names_out(), dtype=str)
        return out

    # ------------------------------------------------------------------ similarity
    def _ragged(self, values: str, indptr: str, item: int) -> list[str]:
        bounds = self.features[indptr]
        return self.features[values][bounds[item]:bounds[item + 1]].tolist()

    def _codes(self, item: int) -> list[str]:
        return self._ragged("atc_codes", "atc_indptr", item)

    def item_keywords(self, item: int) -> list[str]:
        """The item's ``drug_summary`` keywords (empty when the model has none)."""
        if "summary_keywords" not in self.features:
            return []
        return self._ragged("summary_keywords", "summary_keywords_indptr", item)

    @property
    def depth(self) -> int:
        """ATC levels an item is described at (4 for drugs)."""
        return 4 if self.granularity == "ingredient" else int(self.granularity[-1])

    def view_similarities(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """view -> (items × items similarity, items having the view), for views with weight > 0 and data."""
        n = len(self.features["names"])
        views = {}
        if self.weights["structure"] > 0 and "fp_bits" in self.features:
            bits = np.unpackbits(self.features["fp_bits"], axis=1, count=self.n_bits)
            views["structure"] = (tanimoto_matrix(bits), self.features["fp_valid"])
        if self.weights["atc"] > 0:
            codes = [self._codes(i) for i in range(n)]
            views["atc"] = (atc_similarity(codes, self.depth), np.asarray([bool(c) for c in codes]))
        for view, key in (("classes", "classes"), ("text", "text")):
            if self.weights[view] > 0 and f"{key}_data" in self.features:
                matrix = _csr_from(key, self.features)
                has = matrix.getnnz(axis=1) > 0
                # TF-IDF rows are L2-normalized: their dot product is the cosine.
                sim = jaccard(matrix) if view == "classes" else (matrix @ matrix.T).toarray().astype(np.float32)
                views[view] = (sim, has)
        return views

    def combined_similarity(self) -> np.ndarray:
        """Weighted mean of the views both items have (items × items, dense)."""
        n = len(self.features["names"])
        total, weight = np.zeros((n, n), dtype=np.float32), np.zeros((n, n), dtype=np.float32)
        for view, (sim, has) in self.view_similarities().items():
            mask = has.astype(np.float32) * np.float32(self.weights[view])
            sim *= mask[:, None]  # in place: these are n × n
            sim *= has[None, :]
            total += sim
            weight += mask[:, None] * has[None, :]
        return np.divide(total, weight, out=np.zeros_like(total), where=weight > 0)

    def _neighbours(self, dense: np.ndarray) -> sp.csr_matrix:
        """Each row's K + 1 largest positive entries (the item itself included) as CSR."""
        keep = min(self.K + 1, dense.shape[1])
        top = np.argpartition(-dense, keep - 1, axis=1)[:, :keep]
        values = np.take_along_axis(dense, top, axis=1)
        rows = np.repeat(np.arange(dense.shape[0]), keep)
        matrix = sp.csr_matrix((values.ravel(), (rows, top.ravel())), shape=dense.shape, dtype=np.float32)
        matrix.eliminate_zeros()
        return matrix

    # ------------------------------------------------------------------ explanations
    def why_similar(self, item: int, other: int) -> dict[str, Any]:
        """Reasons two items are similar: ``similarity`` (combined, 0 beyond the K neighbours), ``tanimoto``,
        ``atc`` (deepest shared level, code, name), shared ``classes``, ``keywords`` (top terms of the text view's
        cosine) and ``shared_keywords`` (``drug_summary`` keywords of both, in ``item``'s order) (None: not used)."""
        out: dict[str, Any] = {"similarity": float(self.similarity[item, other]), "tanimoto": None, "atc": None,
                               "classes": None, "keywords": None, "shared_keywords": None}
        if "fp_bits" in self.features:
            if self.features["fp_valid"][[item, other]].all():
                bits = np.unpackbits(self.features["fp_bits"][[item, other]], axis=1, count=self.n_bits)
                out["tanimoto"] = float(tanimoto_matrix(bits)[0, 1])
        shared = None
        for level, length in enumerate(ATC_LENGTH.values(), start=1):
            common = sorted({c[:length] for c in self._codes(item)} & {c[:length] for c in self._codes(other)})
            if level <= self.depth and common:
                shared = (level, common[0])
        if shared:
            vocab = self.features["atc_vocab"]
            name = self.features["atc_vocab_names"][np.searchsorted(vocab, shared[1])]
            pair = atc_similarity([self._codes(item), self._codes(other)], self.depth)[0, 1]
            out["atc"] = {"level": shared[0], "code": shared[1], "name": str(name) or None, "similarity": float(pair)}
        if "classes_data" in self.features:
            member = _csr_from("classes", self.features)
            common = np.intersect1d(member[item].indices, member[other].indices)
            out["classes"] = self.features["class_names"][common].tolist()
        if "text_data" in self.features:
            text = _csr_from("text", self.features)
            product = text[item].multiply(text[other]).tocsr()
            order = np.argsort(-product.data, kind="stable")[:N_KEYWORDS]
            out["keywords"] = self.features["terms"][product.indices[order]].tolist()
        if "summary_keywords" in self.features:
            theirs = set(self.item_keywords(other))
            out["shared_keywords"] = [k for k in self.item_keywords(item) if k in theirs]
        return out

    # ------------------------------------------------------------------ state
    def _state(self) -> dict[str, np.ndarray]:
        return _csr_arrays("similarity", self.similarity) | self.features

    def _set_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.similarity = _csr_from("similarity", arrays)
        self.features = {k: v for k, v in arrays.items() if not k.startswith("similarity_")}
