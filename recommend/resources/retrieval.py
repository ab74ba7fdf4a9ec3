"""Resource retrieval over a catalog: BM25 (bm25s), MeSH-term scoring, TF-IDF + SVD embeddings.

- **Text analysis.** bm25s' tokenizer (scikit-learn's ``\\b\\w\\w+\\b`` pattern, lower
  case, its English stopword list) and the Snowball English stemmer (PyStemmer), for
  the index and for every query, so a query word matches a document word by stem.
- **BM25** over title + abstract (bm25s, Lucene variant, ``k1``, ``b``). Query terms
  count once each (a name repeated across synonyms does not weigh more). A query may
  carry secondary ``context`` text (a drug's synonyms and definition) whose new words
  add ``context_weight`` × their BM25: a drug's name ranks, its synonyms widen recall.
- **MeSH-expanded BM25** (pseudo-relevance feedback, never reads a target's MeSH):
  take the top ``feedback_docs`` BM25 documents, weight each keyword (MeSH heading or
  chemical) they carry by (documents among them carrying it) × idf, skip keywords on
  more than ``max_df`` of the catalog (check tags such as "Humans"), keep the best
  ``terms``; score = BM25(query) + ``weight`` × BM25(expansion words not in the query).
- **MeSH feedback overlap** (baseline): the same feedback keyword profile scored
  directly against each document's keywords (idf-weighted overlap), BM25 breaking ties.
- **MeSH name match** (for the apps, not evaluated: it is how relevance is built):
  keywords whose normalized name occurs as a whole-word phrase in the query text score
  ``idf`` on the documents that carry them.
- **TF-IDF + truncated SVD** (scikit-learn): cosine between the query and document
  embeddings (latent semantic indexing).

Files (:meth:`ResourceIndex.save`): bm25s' own index format (``.npy`` arrays saved with
``allow_pickle=False`` plus JSON vocabulary and parameters), the catalog as parquet,
the SVD arrays as ``.npz`` (loaded with ``allow_pickle=False``) and ``index.json``.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import bm25s
import numpy as np
import polars as pl
import scipy.sparse as sp
import Stemmer
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from featurestore.io import atomic_path, write_json_atomic, write_parquet_atomic
from recommend.resources.catalog import CATALOG_SCHEMA

METHODS = ("bm25", "expanded", "mesh_feedback", "svd")
MAX_PHRASE_WORDS = 8
_NON_ALNUM = re.compile(r"[^0-9a-z]+")


def normalize_term(text: str) -> str:
    """Lower case, accents removed, every run of non-alphanumerics one space ("Acid, Acetyl-" -> "acid acetyl")."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _NON_ALNUM.sub(" ", folded.lower()).strip()


@dataclass(frozen=True)
class IndexConfig:
    """How the index is built (BM25 parameters, stemmer, SVD size)."""

    k1: float = 1.5
    b: float = 0.75
    stemmer: str | None = "english"
    stopwords: str = "en"
    svd_components: int = 256
    svd_min_df: int = 2  # stems in fewer documents stay out of the embedding vocabulary
    seed: int = 0


@dataclass(frozen=True)
class Expansion:
    """Pseudo-relevance feedback over the keywords of the top BM25 documents."""

    feedback_docs: int = 10
    terms: int = 5
    weight: float = 0.5
    max_df: float = 0.05


@dataclass
class Query:
    """An analysed query: its distinct stems and, per stem, the first query word that produced it."""

    text: str
    stems: list[str]
    words: dict[str, str] = field(default_factory=dict)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` highest scores, best first; ties go to the lower index."""
    k = min(k, scores.size)
    part = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return part[np.lexsort((part, -scores[part]))]


class Analyzer:
    """bm25s tokenization + stopwords + Snowball stemming, shared by index and queries."""

    def __init__(self, stemmer: str | None, stopwords: str) -> None:
        self.stemmer_name, self.stopwords = stemmer, stopwords
        self._stemmer = Stemmer.Stemmer(stemmer) if stemmer else None

    def words(self, texts: Sequence[str]) -> list[list[str]]:
        """Lower-cased words without stopwords, per text (not stemmed)."""
        return bm25s.tokenize(list(texts), stopwords=self.stopwords, return_ids=False, show_progress=False)

    def stem(self, words: list[str]) -> list[str]:
        return self._stemmer.stemWords(words) if self._stemmer else words

    def __call__(self, text: str) -> list[str]:
        """Stems of one text (the scikit-learn ``analyzer`` interface)."""
        return self.stem(self.words([text])[0])

    def query(self, text: str) -> Query:
        words = self.words([text])[0]
        stems: dict[str, str] = {}
        for word, stem in zip(words, self.stem(words)):
            stems.setdefault(stem, word)
        return Query(text, list(stems), stems)


class ResourceIndex:
    """BM25, keyword and embedding retrieval over one catalog (see the module docstring)."""

    def __init__(
        self, catalog: pl.DataFrame, bm25: bm25s.BM25, config: IndexConfig, svd_terms: list[str],
        svd_idf: np.ndarray, svd_components: np.ndarray, doc_embeddings: np.ndarray,
    ) -> None:
        self.catalog = catalog
        self.bm25 = bm25
        self.config = config
        self.analyzer = Analyzer(config.stemmer, config.stopwords)
        self._postings = (bm25.scores["indptr"], bm25.scores["indices"])
        self.keyword_matrix, self.keyword_names = _keyword_matrix(catalog["keywords"].to_list())
        df = np.asarray(self.keyword_matrix.sum(axis=0)).ravel()
        self.keyword_df = df / max(catalog.height, 1)
        self.keyword_idf = np.log((1 + catalog.height) / (1 + df)) + 1.0
        self._keyword_lookup = {normalize_term(name): j for j, name in enumerate(self.keyword_names)}
        self._svd = _SvdEncoder(self.analyzer, svd_terms, svd_idf, svd_components)
        self.doc_embeddings = doc_embeddings
        self.build_seconds: dict[str, float] = {}  # set by build(): bm25 (tokenize + index) and svd seconds

    # ---- building, saving, loading -------------------------------------------------

    @classmethod
    def build(cls, catalog: pl.DataFrame, config: IndexConfig = IndexConfig()) -> ResourceIndex:
        """Index a catalog (catalog schema; ``title`` and ``text`` are indexed)."""
        catalog = catalog.select(list(CATALOG_SCHEMA)).cast(CATALOG_SCHEMA)
        analyzer = Analyzer(config.stemmer, config.stopwords)
        texts = (catalog["title"].fill_null("") + " " + catalog["text"].fill_null("")).to_list()
        start = time.perf_counter()
        words = analyzer.words(texts)
        stems = [analyzer.stem(w) for w in words]
        bm25 = bm25s.BM25(k1=config.k1, b=config.b, method="lucene")
        bm25.index(stems, show_progress=False)
        bm25_seconds = time.perf_counter() - start
        if config.svd_components == 0:  # no embedding retriever wanted: skip the SVD fit
            index = cls(catalog, bm25, config, [], np.zeros(0), np.zeros((0, 0), np.float32),
                        np.zeros((catalog.height, 0), np.float32))
            index.build_seconds = {"bm25": bm25_seconds, "svd": 0.0}
            return index
        start = time.perf_counter()
        vectorizer = TfidfVectorizer(analyzer=lambda tokens: tokens, sublinear_tf=True, min_df=config.svd_min_df)
        tfidf = vectorizer.fit_transform(stems)
        n_components = max(1, min(config.svd_components, min(tfidf.shape) - 1))
        svd = TruncatedSVD(n_components, algorithm="randomized", random_state=config.seed)
        embeddings = _unit_rows(svd.fit_transform(tfidf))
        terms = vectorizer.get_feature_names_out().tolist()
        index = cls(catalog, bm25, config, terms, vectorizer.idf_, svd.components_.astype(np.float32),
                    embeddings.astype(np.float32))
        index.build_seconds = {"bm25": bm25_seconds, "svd": time.perf_counter() - start}
        return index

    def save(self, path: str | Path) -> Path:
        """Write the index folder (bm25s format, catalog parquet, SVD ``.npz``, ``index.json``)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.bm25.save(str(path / "bm25"), allow_pickle=False)
        write_parquet_atomic(self.catalog, path / "catalog.parquet")
        with atomic_path(path / "svd.npz") as tmp, open(tmp, "wb") as handle:
            np.savez(handle, idf=self._svd.idf, components=self._svd.components, embeddings=self.doc_embeddings)
        write_json_atomic(path / "index.json", {"config": asdict(self.config), "svd_terms": self._svd.terms})
        return path

    @classmethod
    def load(cls, path: str | Path) -> ResourceIndex:
        """Read an index written by :meth:`save` (no pickle anywhere)."""
        path = Path(path)
        meta = json.loads((path / "index.json").read_text())
        bm25 = bm25s.BM25.load(str(path / "bm25"), allow_pickle=False, show_progress=False)
        with np.load(path / "svd.npz", allow_pickle=False) as arrays:
            idf, components, embeddings = arrays["idf"], arrays["components"], arrays["embeddings"]
        catalog = pl.read_parquet(path / "catalog.parquet")
        return cls(catalog, bm25, IndexConfig(**meta["config"]), meta["svd_terms"], idf, components, embeddings)

    # ---- scores --------------------------------------------------------------------

    @property
    def n_docs(self) -> int:
        return self.catalog.height

    def bm25_scores(self, stems: Sequence[str]) -> np.ndarray:
        """BM25 score of every document for distinct query stems (unknown stems ignored)."""
        ids = self.bm25.get_tokens_ids(list(dict.fromkeys(stems)))
        if not ids:
            return np.zeros(self.n_docs, dtype=np.float32)
        return self.bm25.get_scores_from_ids(ids)

    def feedback_keywords(self, scores: np.ndarray, expansion: Expansion) -> tuple[list[int], np.ndarray]:
        """Keyword columns chosen from the top documents of ``scores``, with their weights."""
        feedback = top_k(scores, expansion.feedback_docs)
        feedback = feedback[scores[feedback] > 0]
        counts = np.asarray(self.keyword_matrix[feedback].sum(axis=0)).ravel()
        weights = counts * self.keyword_idf * (self.keyword_df <= expansion.max_df)
        chosen = [int(j) for j in top_k(weights, expansion.terms) if weights[j] > 0]
        return chosen, weights[chosen]

    def expanded_scores(self, query: Query, base: np.ndarray, expansion: Expansion) -> tuple[np.ndarray, list[str]]:
        """MeSH-expanded BM25 scores (``base``: the query's BM25 scores) and the expansion keywords used."""
        chosen, _ = self.feedback_keywords(base, expansion)
        names = [self.keyword_names[j] for j in chosen]
        extra = [s for s in self.analyzer.stem(self.analyzer.words([" ".join(names)])[0]) if s not in query.words]
        return base + expansion.weight * self.bm25_scores(extra), names

    def mesh_feedback_scores(self, base: np.ndarray, expansion: Expansion) -> tuple[np.ndarray, list[str]]:
        """Idf-weighted overlap with the feedback keyword profile; ``base`` (BM25, scaled below 1e-3) breaks ties."""
        chosen, weights = self.feedback_keywords(base, expansion)
        overlap = self.keyword_matrix[:, chosen] @ weights if chosen else np.zeros(self.n_docs)
        tie = base / (base.max() + 1.0) * 1e-3
        return np.asarray(overlap, dtype=np.float64).ravel() + tie, [self.keyword_names[j] for j in chosen]

    def svd_scores(self, text: str) -> np.ndarray:
        """Cosine between the query's TF-IDF + SVD embedding and every document's."""
        if self.doc_embeddings.shape[1] == 0:
            raise ValueError("this index was built with svd_components=0: no embedding retriever")
        return self.doc_embeddings @ self._svd.encode(text)

    def keyword_matches(self, text: str) -> list[int]:
        """Keyword columns whose normalized name is a whole-word phrase of ``text``."""
        words = normalize_term(text).split()
        found: dict[int, None] = {}
        for n in range(min(MAX_PHRASE_WORDS, len(words)), 0, -1):
            for start in range(len(words) - n + 1):
                j = self._keyword_lookup.get(" ".join(words[start : start + n]))
                if j is not None:
                    found[j] = None
        return list(found)

    def mesh_match_scores(self, columns: Sequence[int]) -> np.ndarray:
        """Sum of the idf of the given keywords that each document carries."""
        if not columns:
            return np.zeros(self.n_docs)
        return np.asarray(self.keyword_matrix[:, list(columns)] @ self.keyword_idf[list(columns)]).ravel()

    def scores(self, text: str, method: str = "bm25", expansion: Expansion = Expansion(), mesh_weight: float = 0.0,
               context: str = "", context_weight: float = 0.0) -> tuple[np.ndarray, Query, list[str]]:
        """Scores of every document for ``text`` by ``method`` (see :data:`METHODS`).

        ``context`` is secondary query text (a drug's synonyms and definition): its words
        not already in ``text`` add ``context_weight`` times their own BM25 (or SVD) score.
        ``mesh_weight`` adds the MeSH name match (keywords named in ``text``). Returns the
        scores, the analysed query (text and context words) and the keywords used.
        """
        query = self.analyzer.query(text)
        extra = self.analyzer.query(context) if context and context_weight else Query("", [])
        extra_stems = [s for s in extra.stems if s not in query.words]
        used: list[str] = []
        if method == "svd":
            scores = self.svd_scores(text) + (context_weight * self.svd_scores(context) if extra.stems else 0.0)
        elif method in METHODS:
            base = self.bm25_scores(query.stems) + context_weight * self.bm25_scores(extra_stems)
            if method == "bm25":
                scores = base
            elif method == "expanded":
                scores, used = self.expanded_scores(query, base, expansion)
            else:
                scores, used = self.mesh_feedback_scores(base, expansion)
        else:
            raise ValueError(f"unknown retrieval method {method!r}; use one of {', '.join(METHODS)}")
        query = Query(text, [*query.stems, *extra_stems], {**query.words, **{s: extra.words[s] for s in extra_stems}})
        scores = np.asarray(scores, dtype=np.float64)
        if mesh_weight:
            matched = self.keyword_matches(text)
            scores = scores + mesh_weight * self.mesh_match_scores(matched)
            used += [self.keyword_names[j] for j in matched if self.keyword_names[j] not in used]
        return scores, query, used

    # ---- results with explanations -------------------------------------------------

    def matched_words(self, query: Query, docs: np.ndarray) -> list[list[str]]:
        """Per document, the query words (by stem) that occur in its title or abstract."""
        indptr, indices = self._postings
        found: list[list[str]] = [[] for _ in docs]
        for stem, word in query.words.items():
            token = self.bm25.vocab_dict.get(stem)
            if token is None:
                continue
            present = np.isin(docs, indices[indptr[token] : indptr[token + 1]])
            for position in np.flatnonzero(present):
                found[position].append(word)
        return found

    def search(self, text: str, k: int = 10, method: str = "bm25", expansion: Expansion = Expansion(),
               mesh_weight: float = 0.0, context: str = "", context_weight: float = 0.0) -> pl.DataFrame:
        """Top-``k`` resources for ``text`` with explanations.

        Columns: rank, doc_id, title, url, score, matched_terms (query words found in
        the title or abstract), matched_keywords (the document's keywords among the
        expansion or name-matched ones), keywords. ``context``: see :meth:`scores`.
        """
        scores, query, used = self.scores(text, method, expansion, mesh_weight, context, context_weight)
        docs = top_k(scores, k)
        docs = docs[scores[docs] > 0] if method != "svd" else docs
        used_set = set(used)
        rows = self.catalog[docs.tolist()] if docs.size else self.catalog.clear()
        return rows.select(
            pl.int_range(1, pl.len() + 1, dtype=pl.Int32).alias("rank"), "doc_id", "title", "url",
            pl.Series("score", scores[docs], dtype=pl.Float64),
            pl.Series("matched_terms", self.matched_words(query, docs), dtype=pl.List(pl.String)),
            pl.col("keywords").list.eval(pl.element().filter(pl.element().is_in(list(used_set)))).alias(
                "matched_keywords"),
            "keywords",
        )


class _SvdEncoder:
    """Query side of the TF-IDF + SVD embedding, rebuilt from plain arrays (no fitted estimator kept)."""

    def __init__(self, analyzer: Analyzer, terms: list[str], idf: np.ndarray, components: np.ndarray) -> None:
        self.analyzer, self.terms, self.idf, self.components = analyzer, terms, idf, components
        self._column = {term: j for j, term in enumerate(terms)}

    def encode(self, text: str) -> np.ndarray:
        """Unit-length embedding: sublinear TF × idf, L2-normalized, projected, normalized again."""
        counts: dict[int, int] = {}
        for stem in self.analyzer(text):
            j = self._column.get(stem)
            if j is not None:
                counts[j] = counts.get(j, 0) + 1
        if not counts:
            return np.zeros(self.components.shape[0], dtype=np.float32)
        columns = np.fromiter(counts, dtype=np.int64)
        weights = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self.idf[columns]
        weights /= np.linalg.norm(weights)
        return _unit_rows((self.components[:, columns] @ weights)[None, :])[0].astype(np.float32)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _keyword_matrix(keywords: Iterable[list[str] | None]) -> tuple[sp.csr_matrix, list[str]]:
    """Binary documents × keywords matrix and the keyword names (sorted)."""
    lists = [k or [] for k in keywords]
    names = sorted({k for ks in lists for k in ks})
    column = {name: j for j, name in enumerate(names)}
    rows = np.repeat(np.arange(len(lists)), [len(set(ks)) for ks in lists])
    cols = np.fromiter((column[k] for ks in lists for k in dict.fromkeys(ks)), dtype=np.int64, count=rows.size)
    matrix = sp.csr_matrix((np.ones(rows.size, dtype=np.float64), (rows, cols)), shape=(len(lists), len(names)))
    return matrix, names
