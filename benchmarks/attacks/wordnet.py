"""WordNet 3.0 from Debian's ``wordnet-base`` package, read with nltk, offline.

``apt-get install -y wordnet-base`` puts the database in ``/usr/share/wordnet``.
nltk's ``WordNetCorpusReader`` also wants a ``lexnames`` file that Debian does not
ship, and only reads from directories on ``nltk.data.path``: the database is copied
once into a cache directory (``$PABEE_CACHE_DIR/wordnet-3.0``, default
``~/.cache/pabee-deploy/wordnet-3.0``) together with a generated ``lexnames``,
and that one directory is added to ``nltk.data.path`` when a reader is opened.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

__all__ = ["DEFAULT_WORDNET_DIR", "WordNet", "WordNetError", "default_cache_dir", "prepare_wordnet_dir"]

DEFAULT_WORDNET_DIR = Path("/usr/share/wordnet")
_REQUIRED = tuple(f"{kind}.{pos}" for kind in ("index", "data") for pos in ("noun", "verb", "adj", "adv"))
_OPTIONAL = ("adj.exc", "adv.exc", "noun.exc", "verb.exc", "cntlist.rev", "sentidx.vrb", "sents.vrb")
# WordNet 3.0's lexicographer files, in file-number order (the database's lex_filenum field), with their
# syntactic category (1 noun, 2 verb, 3 adjective, 4 adverb).
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_ONE_WORD = re.compile(r"^[^\W\d_]+(?:['\-][^\W\d_]+)*$")


class WordNetError(RuntimeError):
    """The WordNet database is missing or unreadable."""


def default_cache_dir() -> Path:
    base = os.environ.get("PABEE_CACHE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "pabee-deploy"


def lexnames_text() -> str:
    return "".join(f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(_LEXNAMES))


def prepare_wordnet_dir(source: str | os.PathLike = DEFAULT_WORDNET_DIR, cache_dir: str | os.PathLike | None = None) -> Path:
    """Copy the database from ``source`` into ``cache_dir/wordnet-3.0`` (once) and write ``lexnames``."""
    source = Path(source)
    missing = [name for name in _REQUIRED if not (source / name).is_file()]
    if missing:
        raise WordNetError(
            f"WordNet database not found at {source}: expected {', '.join(_REQUIRED)}; missing {', '.join(missing)}. "
            f"Install Debian's wordnet-base (apt-get install -y wordnet-base) or pass --wordnet-dir DIR"
        )
    target = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = target / "wordnet-3.0"
    target.mkdir(parents=True, exist_ok=True)
    for name in _REQUIRED + _OPTIONAL:
        src = source / name
        dst = target / name
        if src.is_file() and (not dst.is_file() or dst.stat().st_size != src.stat().st_size):
            tmp = target / f".{name}.tmp"
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    lexnames = target / "lexnames"
    if not lexnames.is_file() or lexnames.read_text() != lexnames_text():
        lexnames.write_text(lexnames_text())
    return target


def _open_reader(directory: Path):
    import warnings

    import nltk.data
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class LocalWordNetReader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None  # no cross-version (OMW) mapping: only this local WordNet 3.0 is read

    if str(directory) not in [str(p) for p in nltk.data.path]:
        nltk.data.path.append(str(directory))  # nltk only opens files under its data path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available": expected, no OMW here
        return LocalWordNetReader(str(directory), None)


class WordNet:
    """Synonyms of single words (all parts of speech), TextAttack's ``WordSwapWordNet`` way."""

    def __init__(self, source: str | os.PathLike = DEFAULT_WORDNET_DIR, cache_dir: str | os.PathLike | None = None):
        self.source = Path(source)
        self._cache_dir = cache_dir
        self._reader = None
        self._synonyms: dict[str, tuple[str, ...]] = {}

    def _get_reader(self):
        if self._reader is None:
            directory = prepare_wordnet_dir(self.source, self._cache_dir)
            try:
                self._reader = _open_reader(directory)
            except Exception as exc:  # nltk raises many kinds on a damaged database
                raise WordNetError(f"cannot read WordNet from {directory}: {exc}") from None
        return self._reader

    def synonyms(self, word: str) -> tuple[str, ...]:
        """One-word lemmas sharing a synset with ``word`` (not the word itself), in WordNet order."""
        if word not in self._synonyms:
            key = word.lower()
            found: dict[str, None] = {}
            if _ONE_WORD.match(key):
                for synset in self._get_reader().synsets(key):
                    for lemma in synset.lemmas():
                        name = lemma.name()
                        if "_" in name or not _ONE_WORD.match(name) or name.lower() == key:
                            continue
                        found[name.lower() if word.islower() else name] = None
            self._synonyms[word] = tuple(found)
        return self._synonyms[word]

    def version(self) -> str:
        return str(self._get_reader().get_version())
