"""Candidate vocabulary for CLIP negative labels: WordNet nouns and adjectives.

Never downloads anything (``nltk.download`` is never called). Search order:

1. ``wordnet_dir=`` argument, else the ``FIFTYONE_OOD_WORDNET_DIR`` environment
   variable: an NLTK data directory containing ``corpora/wordnet``, or a directory
   holding the WordNet database files themselves (``index.noun``, ``data.noun``, ...).
2. NLTK's data path (``nltk.data.path``, which includes ``NLTK_DATA``): the first
   ``corpora/wordnet`` directory or ``corpora/wordnet.zip``.
3. The Debian/Ubuntu WordNet 3.0 packages (``apt-get install wordnet-base
   wordnet-sense-index``) in ``/usr/share/wordnet``. Debian omits the ``lexnames``
   file NLTK's reader needs, and NLTK 3.10 refuses files outside its data path, so
   the database is copied once into ``<cache dir>/nltk_data/corpora/wordnet`` with a
   generated ``lexnames`` (the 45 fixed lexicographer files of lexnames(5WN)).
4. Otherwise :class:`~ood_core.errors.ResourceNotFoundError` listing the options.

A plain word list (``word_list=path``; one word per line, optional ``<TAB>noun`` /
``<TAB>adj`` column, default noun) is used *instead of* WordNet when given: it is the
caller's explicit choice.

Normalisation and de-duplication rules (they decide the counts):

- lemma names are lower case in WordNet; underscores become spaces
  (``"ice_cream"`` -> ``"ice cream"``); hyphens and dots are kept;
- adjective satellites (WordNet POS ``s``) are adjectives;
- a vocabulary word names an ID class when it equals, after normalisation, the class
  name, one of its ``/`` or ``,`` alternatives or their regular singular (:func:`id_name_keys`:
  "T-shirt/top" -> "t-shirt", "top"; "Dogs" -> "dog");
- de-duplication is **per part of speech**: a word is kept at most once as a noun and
  at most once as an adjective. A word that is both (``"good"``, ``"blue"``: 3,138 in
  WordNet 3.0) is kept twice by default because it yields two different prompts
  (``"the nice blue"`` vs ``"This is a blue photo"``), as NegLabel's separate noun and
  adjective pools do. ``cross_pos="noun"`` or ``"adj"`` keeps only that POS instead.

With Debian's WordNet 3.0 this gives 117,798 nouns and 21,479 adjectives.

Two WordNet vocabularies (``vocabulary=``):

- ``"paper"`` (default): NegLabel's protocol as closely as WordNet 3.0 allows. The
  official word lists leave out some noun lexicographer files and resolve words that
  are both noun and adjective once; the lists themselves are not shipped here, so the
  rule is ours: a noun is kept when the lexicographer file of its **first (most
  frequent) sense** is one of :data:`PAPER_NOUN_FILES`, the depictable things
  (animal, artifact, body, food, location, object, plant, substance); the 18 abstract
  or collective files (act, attribute, cognition, communication, event, feeling,
  group, motive, person, phenomenon, possession, process, quantity, relation, shape,
  state, time, Tops) are left out. Every adjective is kept; a word that is both a kept
  noun and an adjective stays a **noun** only (``cross_pos="noun"``). Debian's WordNet
  3.0: 61,904 nouns + 20,713 adjectives = 82,617 candidates, so the 15% rule mines
  12,391 negatives (official lists: 10,499; all of WordNet: 20,890).
- ``"all"``: every noun and adjective lemma (``cross_pos="keep_both"`` by default).
"""

import os
import re
import shutil
import tempfile
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..cache import cache_root
from ..errors import OODInputError, ResourceNotFoundError

POS_NOUN = "noun"
POS_ADJ = "adj"
VALID_POS = (POS_NOUN, POS_ADJ)
_POS_ALIASES = {
    "noun": POS_NOUN, "n": POS_NOUN, "nouns": POS_NOUN,
    "adj": POS_ADJ, "a": POS_ADJ, "s": POS_ADJ, "adjective": POS_ADJ, "adjectives": POS_ADJ,
}

ENV_WORDNET_DIR = "FIFTYONE_OOD_WORDNET_DIR"
# a word list's comment after a word: "#" preceded by whitespace (a tab included)
_INLINE_COMMENT = re.compile(r"\s#")

VOCABULARIES = ("paper", "all")
#: noun lexicographer files of the "paper" vocabulary (a noun's first sense decides)
PAPER_NOUN_FILES = ("noun.animal", "noun.artifact", "noun.body", "noun.food", "noun.location",
                    "noun.object", "noun.plant", "noun.substance")
#: the cross-POS rule each vocabulary uses when ``cross_pos`` is not given
DEFAULT_CROSS_POS = {"paper": "noun", "all": "keep_both"}
DEFAULT_SYSTEM_WORDNET_DIRS = ("/usr/share/wordnet",)

# WordNet 3.0 lexicographer files, in file-number order (lexnames(5WN)). The number
# of a line is the ``lex_filenum`` field of every synset in data.*; the category is
# 1 noun, 2 verb, 3 adjective, 4 adverb.
LEXICOGRAPHER_FILES = (
    "adj.all", "adj.pert", "adv.all", "noun.Tops", "noun.act", "noun.animal",
    "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group",
    "noun.location", "noun.motive", "noun.object", "noun.person", "noun.phenomenon",
    "noun.plant", "noun.possession", "noun.process", "noun.quantity", "noun.relation",
    "noun.shape", "noun.state", "noun.substance", "noun.time", "verb.body",
    "verb.change", "verb.cognition", "verb.communication", "verb.competition",
    "verb.consumption", "verb.contact", "verb.creation", "verb.emotion", "verb.motion",
    "verb.perception", "verb.possession", "verb.social", "verb.stative", "verb.weather",
    "adj.ppl",
)
_LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}

# Files NLTK's WordNetCorpusReader opens (lexnames is generated when missing).
_DB_FILES = tuple(
    [f"index.{p}" for p in ("noun", "verb", "adj", "adv")]
    + [f"data.{p}" for p in ("noun", "verb", "adj", "adv")]
    + [f"{p}.exc" for p in ("noun", "verb", "adj", "adv")]
    + ["index.sense", "cntlist.rev"]
)
_REQUIRED_FILES = ("index.noun", "index.adj", "data.noun", "data.adj")

_INSTALL_HELP = (
    "Install one of: (1) Debian/Ubuntu packages: apt-get install wordnet-base "
    "wordnet-sense-index (WordNet 3.0 in /usr/share/wordnet); (2) NLTK's WordNet: a "
    "directory containing corpora/wordnet (or corpora/wordnet.zip), passed as "
    f"wordnet_dir=... or in the {ENV_WORDNET_DIR} / NLTK_DATA environment variable "
    "(python -m nltk.downloader wordnet on a machine with internet, then copy the "
    "directory); (3) your own vocabulary: word_list='/path/words.txt', one word per "
    "line with an optional tab-separated 'noun' or 'adj' column."
)


def lexnames_text():
    """Contents of WordNet 3.0's ``lexnames`` file: ``NN<TAB>name<TAB>category`` lines."""
    return "".join(
        f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n"
        for i, name in enumerate(LEXICOGRAPHER_FILES)
    )


def normalize_word(text):
    """Canonical form used for de-duplication and ID-label matching.

    NFKC, lower case (casefold), underscores to spaces, runs of whitespace collapsed.
    """
    text = unicodedata.normalize("NFKC", str(text)).replace("_", " ")
    return " ".join(text.casefold().split())


def _singulars(key):
    """Singulars of a regular English plural ("dogs" -> "dog", "buses" -> "bus", "berries" -> "berry"); a few are
    not words ("shoes" -> "sho"): they only widen what is kept out of the negatives, which costs nothing."""
    out = set()
    if key.endswith("ies") and len(key) > 4:
        out.add(key[:-3] + "y")
    if key.endswith("es") and len(key) > 3:
        out.add(key[:-2])
    if key.endswith("s") and not key.endswith(("ss", "us", "is")) and len(key) > 2:
        out.add(key[:-1])
    return out


def id_name_keys(names):
    """The normalised words (:func:`normalize_word`) that name one of the ID classes ``names``.

    A class name stands for itself, for each of its alternatives (Fashion-MNIST's "T-shirt/top": "t-shirt" and
    "top"; ImageNet's "tench, Tinca tinca": "tench" and "tinca tinca") and for their singulars ("Dogs", "Ankle
    boots": "dog", "ankle boot"): datasets name classes in the plural and with alternatives, WordNet's lemmas are
    singular, and a vocabulary word that names an ID class must never be one of its negative labels. A word merely
    containing a class name ("boot" for "Ankle boot", "hot dog" for "dog") names another thing and stays.
    """
    if isinstance(names, str):
        names = [names]
    keys = set()
    for name in names:
        key = normalize_word(name)
        parts = {key} | {" ".join(p.split()) for p in key.replace(",", "/").split("/")}
        for part in parts - {""}:
            keys |= {part} | _singulars(part)
    return keys


def names_id_class(word, keys):
    """Whether the vocabulary ``word`` names an ID class; ``keys`` from :func:`id_name_keys`."""
    return normalize_word(word) in keys


def require_wordy_names(names):
    """Refuse class names without a letter or digit ("-", "...", "()"): their CLIP prompts ("a photo of a -")
    name no class, so the score would compare images with meaningless text."""
    bad = [n for n in names if isinstance(n, str) and not any(ch.isalnum() for ch in n)]
    if bad:
        raise OODInputError(
            f"ID class names must contain a letter or digit; {len(bad)} of them are only punctuation or "
            f"whitespace: {bad[:5]!r}. Their prompts name no class; give those classes real names (e.g. "
            "'background' or 'other') or leave them out of the ID classes.")
    return names


@dataclass
class Lexicon:
    """Candidate words with their part of speech (``"noun"`` or ``"adj"``).

    ``words[i]`` has part of speech ``pos[i]``; ``source`` says where they came from.
    """

    words: list
    pos: list
    source: str = ""
    excluded: list = field(default_factory=list)
    #: how the words were chosen ("paper", "all" or "word_list")
    vocabulary: str = ""

    def __post_init__(self):
        if len(self.words) != len(self.pos):
            raise OODInputError(
                f"Lexicon has {len(self.words)} words but {len(self.pos)} POS tags; "
                "give one POS per word."
            )
        bad = sorted({p for p in self.pos if p not in VALID_POS})
        if bad:
            raise OODInputError(f"Lexicon POS tags must be 'noun' or 'adj'; got {bad}.")

    def __len__(self):
        return len(self.words)

    def count(self, pos):
        """Number of words with part of speech ``pos``."""
        return sum(1 for p in self.pos if p == pos)

    def without(self, labels):
        """Return a copy without words equal to any of ``labels``.

        Matching is :func:`id_name_keys`: after :func:`normalize_word` (case-insensitive,
        ``_`` = space), a class's alternatives ("T-shirt/top") and singular ("Dogs") included:
        an in-distribution class name must never serve as a negative label. Removed
        words are listed in the copy's ``excluded`` (as ``(word, pos)`` pairs).
        """
        banned = id_name_keys(labels)
        keep_w, keep_p, removed = [], [], list(self.excluded)
        for w, p in zip(self.words, self.pos):
            if names_id_class(w, banned):
                removed.append((w, p))
            else:
                keep_w.append(w)
                keep_p.append(p)
        return Lexicon(keep_w, keep_p, source=self.source, excluded=removed, vocabulary=self.vocabulary)


def _dedupe(pairs, cross_pos):
    """Keep first occurrence per (word, POS); apply the cross-POS rule."""
    if cross_pos not in ("keep_both", POS_NOUN, POS_ADJ):
        raise OODInputError(
            f"cross_pos must be 'keep_both', 'noun' or 'adj'; got {cross_pos!r}."
        )
    seen = set()
    out = []
    for w, p in pairs:
        key = (normalize_word(w), p)
        if not key[0] or key in seen:
            continue
        seen.add(key)
        out.append((w, p))
    if cross_pos != "keep_both":
        by_pos = {POS_NOUN: set(), POS_ADJ: set()}
        for w, p in out:
            by_pos[p].add(normalize_word(w))
        other = POS_ADJ if cross_pos == POS_NOUN else POS_NOUN
        both = by_pos[POS_NOUN] & by_pos[POS_ADJ]
        out = [(w, p) for w, p in out if not (p == other and normalize_word(w) in both)]
    return out


# ---------------------------------------------------------------------- word lists
def read_word_list(path, *, default_pos=POS_NOUN, cross_pos="keep_both"):
    """Read a plain word list: one word per line, optional ``<TAB>noun|adj`` column.

    Blank lines and lines starting with ``#`` are skipped, and so is a comment after a word (``"horse  # farm"``:
    ``#`` after whitespace; a ``#`` inside a word, as in ``"C#"``, stays); underscores become spaces.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ResourceNotFoundError(
            f"word_list file {str(path)!r} does not exist; pass a text file with one "
            "word per line (optionally '<word>\\tnoun' or '<word>\\tadj')."
        )
    pairs = []
    # Errors give the file and line number only, never the line's text: the file may be
    # one an App user named, and its contents are not theirs to read through us.
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                # utf-8-sig on the first line: a byte-order mark (Windows editors write one) is not part of
                # the first word, else that word matches no ID class name and is never excluded
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise OODInputError(
                    f"word_list file {str(path)!r}, line {lineno}: not UTF-8 text; save the "
                    "word list as UTF-8 text with one word per line."
                ) from None
            line = _INLINE_COMMENT.split(line, maxsplit=1)[0]  # else "horse  # farm" is a candidate word
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            word = " ".join(parts[0].replace("_", " ").split())
            tag = parts[1].strip().lower() if len(parts) > 1 and parts[1].strip() else default_pos
            if tag not in _POS_ALIASES:
                raise OODInputError(
                    f"word_list file {str(path)!r}, line {lineno}: the second (tab-separated) "
                    "column is not a part of speech; write 'noun' or 'adj' there, or leave it out."
                )
            if word:
                pairs.append((word, _POS_ALIASES[tag]))
    pairs = _dedupe(pairs, cross_pos)
    if not pairs:
        raise OODInputError(f"word_list file {str(path)!r} contains no words.")
    return Lexicon([w for w, _ in pairs], [p for _, p in pairs], source=f"word_list:{path}",
                   vocabulary="word_list")


# ---------------------------------------------------------------------- WordNet
@dataclass
class WordNetLocation:
    """Where WordNet was found: ``path`` is a directory (or a zip + member prefix)."""

    path: str
    source: str
    zip_member: str = ""


def _is_wordnet_db(d):
    return d.is_dir() and all((d / f).is_file() for f in _REQUIRED_FILES)


def _nltk_paths(nltk_data_paths):
    if nltk_data_paths is not None:
        return [str(p) for p in nltk_data_paths]
    try:
        import nltk
    except ImportError:
        return []
    return [str(getattr(p, "path", p)) for p in nltk.data.path]


def _cached_copy_dir(cache_dir):
    base = Path(cache_dir if cache_dir is not None else cache_root())
    return base / "nltk_data" / "corpora" / "wordnet"


def locate_wordnet(
    *, wordnet_dir=None, nltk_data_paths=None, system_dirs=None, cache_dir=None
):
    """Find WordNet without reading it; returns a :class:`WordNetLocation` or ``None``.

    ``nltk_data_paths`` defaults to ``nltk.data.path``, ``system_dirs`` to
    ``("/usr/share/wordnet",)``. A directory without ``lexnames`` is reported with
    source ``"system"`` and is copied by :func:`load_wordnet_lexicon`.
    """
    explicit = wordnet_dir if wordnet_dir is not None else os.environ.get(ENV_WORDNET_DIR)
    if explicit:
        d = Path(explicit).expanduser()
        for cand in (d / "corpora" / "wordnet", d):
            if _is_wordnet_db(cand):
                src = "explicit" if (cand / "lexnames").is_file() else "system"
                return WordNetLocation(str(cand.resolve()), src)
        if (d / "corpora" / "wordnet.zip").is_file():
            return WordNetLocation(str((d / "corpora" / "wordnet.zip").resolve()), "nltk", "wordnet/")
        raise ResourceNotFoundError(
            f"wordnet_dir={str(d)!r} (argument or {ENV_WORDNET_DIR}) holds no WordNet "
            f"database (expected corpora/wordnet/ or the files {list(_REQUIRED_FILES)}). "
            + _INSTALL_HELP
        )
    for p in _nltk_paths(nltk_data_paths):
        d = Path(p).expanduser() / "corpora"
        if _is_wordnet_db(d / "wordnet") and (d / "wordnet" / "lexnames").is_file():
            return WordNetLocation(str((d / "wordnet").resolve()), "nltk")
        if (d / "wordnet.zip").is_file():
            return WordNetLocation(str((d / "wordnet.zip").resolve()), "nltk", "wordnet/")
    copy = _cached_copy_dir(cache_dir)
    if _is_wordnet_db(copy) and (copy / "lexnames").is_file():
        return WordNetLocation(str(copy), "cache")
    for p in system_dirs if system_dirs is not None else DEFAULT_SYSTEM_WORDNET_DIRS:
        d = Path(p)
        if _is_wordnet_db(d):
            return WordNetLocation(str(d.resolve()), "system")
    return None


def prepare_wordnet_copy(src_dir, cache_dir=None):
    """Copy a WordNet database (e.g. Debian's) into the cache and add ``lexnames``.

    Returns the ``.../nltk_data/corpora/wordnet`` directory. Files are copied, not
    symlinked (NLTK 3.10 refuses links leaving its data path). The copy is built in
    a temporary sibling and renamed into place, so concurrent processes never see a
    half-written database.
    """
    src = Path(src_dir)
    target = _cached_copy_dir(cache_dir)
    if _is_wordnet_db(target) and (target / "lexnames").is_file():
        return target
    missing = [f for f in _DB_FILES if not (src / f).is_file()]
    if missing:
        raise ResourceNotFoundError(
            f"WordNet at {str(src)!r} lacks {missing}; reinstall it. " + _INSTALL_HELP
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wordnet-", dir=target.parent))
    try:
        for f in _DB_FILES:
            shutil.copyfile(src / f, tmp / f)
        if (src / "lexnames").is_file():
            shutil.copyfile(src / "lexnames", tmp / "lexnames")
        else:
            (tmp / "lexnames").write_text(lexnames_text(), encoding="ascii")
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "lexnames").is_file():  # not a lost race: a real error
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _allow_nltk_root(root):
    # NLTK 3.10 only opens files below a directory of nltk.data.path.
    import nltk

    root = str(root)
    if root not in [str(getattr(p, "path", p)) for p in nltk.data.path]:
        nltk.data.path.append(root)


def _open_reader(location):
    try:
        from nltk.corpus.reader.wordnet import WordNetCorpusReader
        from nltk.data import FileSystemPathPointer, ZipFilePathPointer
    except ImportError as e:
        raise ImportError(
            "Reading WordNet needs nltk: pip install nltk (or pass word_list=...)."
        ) from e
    if location.zip_member:
        _allow_nltk_root(Path(location.path).parent)
        root = ZipFilePathPointer(location.path, location.zip_member)
    else:
        _allow_nltk_root(location.path)
        root = FileSystemPathPointer(location.path)
    class EnglishWordNetReader(WordNetCorpusReader):
        # NLTK maps every WordNet to "corpora/wordnet" on its data path for the
        # multilingual (OMW) functions, which re-reads index.sense and fails when the
        # database lives elsewhere. We only read English lemma names: no mapping.
        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():
        # "multilingual functions are not available": we only read English lemmas.
        warnings.filterwarnings("ignore", message=".*multilingual.*")
        return EnglishWordNetReader(root, None)


def check_vocabulary_name(vocabulary):
    if vocabulary not in VOCABULARIES:
        raise OODInputError(
            f"vocabulary must be one of {VOCABULARIES} ('paper': NegLabel's protocol, 'all': every WordNet "
            f"noun and adjective); got {vocabulary!r}."
        )
    return vocabulary


def first_sense_lexnames(reader):
    """Noun lemma (index form, ``_`` for spaces) -> lexicographer file of its first sense.

    WordNet lists a lemma's synsets in ``index.noun`` by decreasing sense frequency,
    so the first offset is its most frequent sense.
    """
    lexname_of = {s.offset(): s.lexname() for s in reader.all_synsets("n")}
    out = {}
    with reader.open("index.noun") as f:
        for line in f:
            if line.startswith(" "):  # the license header
                continue
            fields = line.split()
            out[fields[0]] = lexname_of[int(fields[-int(fields[2])])]
    return out


def load_wordnet_lexicon(
    *,
    wordnet_dir=None,
    nltk_data_paths=None,
    system_dirs=None,
    cache_dir=None,
    cross_pos=None,
    vocabulary="paper",
):
    """Read WordNet nouns and adjectives (see the module docstring for rules and order).

    Nouns come first, then adjectives, each in WordNet's (alphabetical) index order.
    ``vocabulary``: ``"paper"`` (default) or ``"all"``; ``cross_pos`` ``None`` = that
    vocabulary's rule (:data:`DEFAULT_CROSS_POS`). Raises
    :class:`ResourceNotFoundError` when no WordNet is found.

    Side effect: the WordNet directory used is appended to ``nltk.data.path`` (NLTK
    3.10 opens files only below its data path); nothing is downloaded or written
    except the one-time copy of a system WordNet into the cache directory.
    """
    check_vocabulary_name(vocabulary)
    loc = locate_wordnet(
        wordnet_dir=wordnet_dir,
        nltk_data_paths=nltk_data_paths,
        system_dirs=system_dirs,
        cache_dir=cache_dir,
    )
    if loc is None:
        raise ResourceNotFoundError("No WordNet database found. " + _INSTALL_HELP)
    if loc.source == "system":
        loc = WordNetLocation(str(prepare_wordnet_copy(loc.path, cache_dir)), f"copy of {loc.path}")
    reader = _open_reader(loc)
    keep_noun = None
    if vocabulary == "paper":
        lexnames = first_sense_lexnames(reader)
        keep_noun = {name for name, lexname in lexnames.items() if lexname in PAPER_NOUN_FILES}
    pairs = []
    for nltk_pos, pos in (("n", POS_NOUN), ("a", POS_ADJ)):
        # all_lemma_names("a") includes satellite-only adjectives ("s").
        names = sorted(set(reader.all_lemma_names(nltk_pos)))
        if pos == POS_NOUN and keep_noun is not None:
            names = [n for n in names if n in keep_noun]
        pairs.extend((name.replace("_", " "), pos) for name in names)
    pairs = _dedupe(pairs, DEFAULT_CROSS_POS[vocabulary] if cross_pos is None else cross_pos)
    where = loc.path + (f"!{loc.zip_member}" if loc.zip_member else "")
    return Lexicon(
        [w for w, _ in pairs],
        [p for _, p in pairs],
        source=f"wordnet:{where} ({loc.source})",
        vocabulary=vocabulary,
    )


def load_lexicon(
    *,
    word_list=None,
    wordnet_dir=None,
    nltk_data_paths=None,
    system_dirs=None,
    cache_dir=None,
    cross_pos=None,
    exclude=None,
    vocabulary="paper",
):
    """Load the candidate vocabulary: ``word_list`` if given, else WordNet.

    Args:
        word_list: path of a plain word list (used instead of WordNet).
        wordnet_dir: explicit WordNet location (else ``$FIFTYONE_OOD_WORDNET_DIR``).
        nltk_data_paths: NLTK data directories to search (default ``nltk.data.path``).
        system_dirs: system WordNet directories (default ``("/usr/share/wordnet",)``).
        cache_dir: where a Debian WordNet copy goes (default: the package cache root,
            :func:`ood_core.cache.cache_root`).
        cross_pos: ``"keep_both"``, ``"noun"`` or ``"adj"``: what to do with a
            word that is both a noun and an adjective; ``None`` = the vocabulary's rule
            (``"keep_both"`` for word lists and ``"all"``, ``"noun"`` for ``"paper"``).
        vocabulary: WordNet only: ``"paper"`` (NegLabel's protocol, default) or
            ``"all"`` (see the module docstring).
        exclude: ID class names to drop (case-insensitive, alternatives and singulars
            included; see :meth:`Lexicon.without`).
    """
    if word_list is not None:
        lex = read_word_list(word_list, cross_pos="keep_both" if cross_pos is None else cross_pos)
    else:
        lex = load_wordnet_lexicon(
            wordnet_dir=wordnet_dir,
            nltk_data_paths=nltk_data_paths,
            system_dirs=system_dirs,
            cache_dir=cache_dir,
            cross_pos=cross_pos,
            vocabulary=vocabulary,
        )
    if exclude:
        lex = lex.without(exclude)
    return lex
