"""Token-id featurizers for sequence models: SMILES tokens (molecules) and amino-acid tokens (proteins).

Each view stores a variable-length ``List(UInt16)`` of token ids; the vocabulary is a view
parameter, so it is part of the view id and of every checkpoint trained on the view.
Id ``PAD_ID`` (0) is padding, added at batch time by the model; ``UNK_ID`` (1) stands
for any token outside the vocabulary; vocabulary token ``i`` has id ``i + 2``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import polars as pl

from featurestore.featurizers.base import FeaturizationError, Featurizer, register_featurizer

PAD_ID = 0
UNK_ID = 1
RESERVED = 2  # PAD, UNK

# Schwaller et al. (Molecular Transformer, 2019): bracket atoms whole, two-letter organic atoms, %NN ring closures.
SMILES_REGEX = re.compile(
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|/|:|~|@|\?|>|\*|\$|%[0-9]{2}|[0-9])"
)

# Version 1 of the SMILES vocabulary: every token seen at least 20 times in the shipped data sets' SMILES
# (ESOL, FreeSolv, Lipophilicity, MoleculeACE, KIBA, MOSES, drugs), plus common charged/stereo bracket atoms.
SMILES_VOCABULARY = (
    "c", "C", "(", ")", "1", "O", "2", "N", "=", "n", "3", "F", "4", "-", "S", "Cl", "s", "o", "[C@H]", "[nH]",
    "[C@@H]", "#", "5", "Br", "/", "[C@@]", "[C@]", "6", "[O-]", "\\", "[N+]", ".", "I", "7", "P", "[n+]", "B",
    "8", "9", "%10", "[Na+]", "[S+]", "[OH-]", "[O-2]", "[O]", "[Mg+2]", "[Si]", "[2H]", "[Cl-]", "[Fe+3]", "[K+]",
    "[18F]", "[Al+3]", "[OH]", "[C]", "[N-]", "[Ca+2]", "[NH+]", "[NH2+]", "[NH3+]", "[nH+]", "[n-]", "[S@]",
    "[S@@]", "[N@]", "[N@@]", "[N@+]", "[N@@+]", "[Se]", "[se]", "[B-]", "[H]", "[Br-]", "[I-]", "[P+]", "b", "p",
    "*", ":", "~",
)

# The 20 standard residues, then the ambiguity/rare codes DeepDTA keeps (B, O, U, X, Z); anything else is UNK.
PROTEIN_VOCABULARY = tuple("ACDEFGHIKLMNPQRSTVWY") + tuple("BOUXZ")


def tokenize_smiles(smiles: str) -> list[str]:
    """Split a SMILES into regex tokens; raises :class:`FeaturizationError` if a character matches no token."""
    tokens = SMILES_REGEX.findall(smiles)
    if "".join(tokens) != smiles:
        position = next(i for i, (a, b) in enumerate(zip("".join(tokens) + "\0", smiles)) if a != b)
        raise FeaturizationError(f"SMILES {smiles!r}: no token matches the text at position {position}")
    return tokens


class TokenFeaturizer(Featurizer[str, np.ndarray]):
    """Base: ``tokens(item)`` -> ids through ``vocabulary`` (unknown -> ``UNK_ID``), stored as ``List(UInt16)``.

    ``max_length`` keeps the first tokens of longer inputs (``None``: all).
    """

    column: str

    def __init__(self, vocabulary: Sequence[str], max_length: int | None = None) -> None:
        vocabulary = [str(token) for token in vocabulary]
        if len(set(vocabulary)) != len(vocabulary):
            raise ValueError(f"{self.name}: the vocabulary repeats tokens")
        if max_length is not None and max_length < 1:
            raise ValueError(f"{self.name}: max_length must be positive or None, got {max_length}")
        super().__init__(vocabulary=vocabulary, max_length=max_length)
        self.ids = {token: i + RESERVED for i, token in enumerate(vocabulary)}
        self.max_length = max_length

    @property
    def n_ids(self) -> int:
        """Embedding rows a model needs: the vocabulary plus PAD and UNK."""
        return len(self.ids) + RESERVED

    def tokens(self, item: str) -> list[str]:
        raise NotImplementedError

    def schema(self) -> dict[str, pl.DataType]:
        return {self.column: pl.List(pl.UInt16)}

    def __call__(self, item: str) -> np.ndarray:
        tokens = self.tokens((item or "").strip())
        if not tokens:
            raise FeaturizationError(f"{self.name}: empty input")
        return np.array([self.ids.get(token, UNK_ID) for token in tokens[: self.max_length]], dtype=np.uint16)

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Token strings of ``ids`` (``<unk>`` / ``<pad>`` for the reserved ids)."""
        names = ["<pad>", "<unk>", *self.ids]
        return [names[i] for i in ids]

    def to_columns(self, values: list[np.ndarray | None]) -> dict[str, pl.Series]:
        rows = [None if v is None else v.tolist() for v in values]
        return {self.column: pl.Series(self.column, rows, dtype=pl.List(pl.UInt16))}


@register_featurizer
class SmilesTokenFeaturizer(TokenFeaturizer):
    """Regex tokens of the standardized canonical SMILES (the molecule's stored ``smiles``)."""

    name = "smiles_tokens"
    column = "smiles_tokens"

    def __init__(self, vocabulary: Sequence[str] = SMILES_VOCABULARY, max_length: int | None = None) -> None:
        super().__init__(vocabulary, max_length)

    def tokens(self, item: str) -> list[str]:
        return tokenize_smiles(item)


@register_featurizer
class ProteinTokenFeaturizer(TokenFeaturizer):
    """One token per residue of the upper-cased sequence; the first ``max_length`` residues (DeepDTA: 1000)."""

    name = "protein_tokens"
    entity = "protein"
    input_column = "sequence"
    column = "protein_tokens"

    def __init__(self, vocabulary: Sequence[str] = PROTEIN_VOCABULARY, max_length: int | None = 1000) -> None:
        super().__init__(vocabulary, max_length)

    def tokens(self, item: str) -> list[str]:
        return list(item.upper())
