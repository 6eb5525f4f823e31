"""WordNet / word-list lexicon: real Debian WordNet, search order, failures."""

from pathlib import Path

import pytest

from ood_core.clip import lexicon as L
from ood_core.errors import OODInputError, ResourceNotFoundError

DEBIAN_WORDNET = Path("/usr/share/wordnet")


def _index_lemma_count(name):
    """Lemmas in a WordNet index file: one per non-license line (independent of NLTK)."""
    with open(DEBIAN_WORDNET / name, encoding="utf-8") as f:
        return sum(1 for line in f if not line.startswith(" "))


@pytest.fixture(scope="module")
def wordnet_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("ood_cache")


@pytest.fixture(scope="module")
def debian_lexicon(wordnet_cache):
    # No NLTK data dirs: the Debian copy path (copy + generated lexnames) must be used.
    return L.load_lexicon(nltk_data_paths=[], cache_dir=wordnet_cache, vocabulary="all")


@pytest.fixture(autouse=True)
def no_wordnet_env(monkeypatch):
    monkeypatch.delenv(L.ENV_WORDNET_DIR, raising=False)


def test_debian_wordnet_counts_and_pos(debian_lexicon):
    lex = debian_lexicon
    nouns, adjs = lex.count("noun"), lex.count("adj")
    # Every index line is one lemma; de-duplication is per POS, so counts must match.
    assert nouns == _index_lemma_count("index.noun")
    assert adjs == _index_lemma_count("index.adj")
    # WordNet 3.0's published statistics (wnstats(7WN)): 117,798 noun, 21,479 adj strings.
    assert (nouns, adjs) == (117798, 21479)
    assert "copy of /usr/share/wordnet" in lex.source
    pos_of = {}
    for w, p in zip(lex.words, lex.pos):
        pos_of.setdefault(w, []).append(p)
    assert pos_of["dog"] == ["noun"]
    assert pos_of["happy"] == ["adj"]
    assert sorted(pos_of["good"]) == ["adj", "noun"]  # kept once per POS
    assert "ice cream" in pos_of and "ice_cream" not in pos_of
    assert not any("_" in w for w in lex.words)
    assert len(set(zip(lex.words, lex.pos))) == len(lex)
    assert set(lex.pos) == {"noun", "adj"}


def test_generated_lexnames_match_data_files(debian_lexicon, wordnet_cache):
    copy = wordnet_cache / "nltk_data" / "corpora" / "wordnet"
    text = (copy / "lexnames").read_text()
    assert text == L.lexnames_text()
    rows = [line.split("\t") for line in text.splitlines()]
    assert len(rows) == 45 and [int(r[0]) for r in rows] == list(range(45))
    names = {int(r[0]): r[1] for r in rows}
    category = {int(r[0]): int(r[2]) for r in rows}
    # The lex_filenum field (2nd) of every synset must name a file of the data file's POS.
    for pos, cat in (("noun", 1), ("verb", 2), ("adj", 3), ("adv", 4)):
        used = set()
        with open(DEBIAN_WORDNET / f"data.{pos}", encoding="utf-8") as f:
            for line in f:
                if not line.startswith(" "):
                    used.add(int(line.split(" ", 2)[1]))
        assert used, pos
        assert all(names[n].startswith(pos + ".") and category[n] == cat for n in used), pos
    assert names[5] == "noun.animal" and names[44] == "adj.ppl"


def test_cached_copy_is_reused(debian_lexicon, wordnet_cache):
    loc = L.locate_wordnet(nltk_data_paths=[], cache_dir=wordnet_cache)
    assert loc.source == "cache"
    assert Path(loc.path) == wordnet_cache / "nltk_data" / "corpora" / "wordnet"


def _fake_db(folder, with_lexnames=True):
    folder.mkdir(parents=True)
    for name in ("index.noun", "index.adj", "data.noun", "data.adj"):
        (folder / name).write_text("")
    if with_lexnames:
        (folder / "lexnames").write_text(L.lexnames_text())
    return folder


def test_search_order(tmp_path, monkeypatch):
    explicit = _fake_db(tmp_path / "mine" / "corpora" / "wordnet")
    env_dir = _fake_db(tmp_path / "env" / "corpora" / "wordnet")
    nltk_db = _fake_db(tmp_path / "nltkdata" / "corpora" / "wordnet")
    system = _fake_db(tmp_path / "system", with_lexnames=False)
    empty_cache = tmp_path / "cache"
    kw = dict(nltk_data_paths=[tmp_path / "nltkdata"], system_dirs=[system], cache_dir=empty_cache)

    monkeypatch.setenv(L.ENV_WORDNET_DIR, str(tmp_path / "env"))
    assert L.locate_wordnet(wordnet_dir=tmp_path / "mine", **kw).path == str(explicit)
    assert L.locate_wordnet(**kw).path == str(env_dir)
    monkeypatch.delenv(L.ENV_WORDNET_DIR)
    loc = L.locate_wordnet(**kw)
    assert (loc.path, loc.source) == (str(nltk_db), "nltk")
    loc = L.locate_wordnet(nltk_data_paths=[], system_dirs=[system], cache_dir=empty_cache)
    assert (loc.path, loc.source) == (str(system), "system")  # needs copy + lexnames
    # A directory holding the database files directly is accepted too.
    assert L.locate_wordnet(wordnet_dir=explicit, **kw).path == str(explicit)
    # NLTK's zipped corpus.
    zroot = tmp_path / "zipped"
    (zroot / "corpora").mkdir(parents=True)
    (zroot / "corpora" / "wordnet.zip").write_bytes(b"")
    loc = L.locate_wordnet(nltk_data_paths=[zroot], system_dirs=[system], cache_dir=empty_cache)
    assert loc.zip_member == "wordnet/" and loc.path.endswith("wordnet.zip")


def test_nothing_found_lists_install_options(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ResourceNotFoundError) as err:
        L.load_lexicon(nltk_data_paths=[empty], system_dirs=[empty], cache_dir=empty)
    msg = str(err.value)
    assert "apt-get install wordnet-base wordnet-sense-index" in msg
    assert "corpora/wordnet" in msg and "word_list=" in msg
    with pytest.raises(ResourceNotFoundError, match="holds no WordNet"):
        L.load_lexicon(wordnet_dir=empty, nltk_data_paths=[], system_dirs=[], cache_dir=empty)
    with pytest.raises(ResourceNotFoundError, match="does not exist"):
        L.load_lexicon(word_list=tmp_path / "missing.txt")


def test_word_list_file(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text(
        "# my vocabulary\n"
        "dog\n"
        "Hot_Dog\tnoun\n"
        "\n"
        "blue\tadj\n"
        "blue\tnoun\n"
        "DOG\n"
        "sunny\ta\n",
        encoding="utf-8",
    )
    lex = L.load_lexicon(word_list=path, system_dirs=[])  # WordNet not consulted
    assert lex.words == ["dog", "Hot Dog", "blue", "blue", "sunny"]
    assert lex.pos == ["noun", "noun", "adj", "noun", "adj"]
    assert lex.source.startswith("word_list:")
    nouns_only = L.load_lexicon(word_list=path, cross_pos="noun")
    assert list(zip(nouns_only.words, nouns_only.pos)).count(("blue", "noun")) == 1
    assert ("blue", "adj") not in list(zip(nouns_only.words, nouns_only.pos))
    bad = tmp_path / "bad.txt"
    bad.write_text("dog\nrun\tverb\n")
    with pytest.raises(OODInputError, match="bad.txt', line 2: the second"):
        L.load_lexicon(word_list=bad)
    with pytest.raises(OODInputError, match="cross_pos"):
        L.load_lexicon(word_list=path, cross_pos="both")


def test_exclude_id_labels_exact_case_insensitive(debian_lexicon):
    lex = debian_lexicon
    out = lex.without(["Dog", "Ice_Cream", "GOOD"])
    pairs = set(zip(out.words, out.pos))
    assert ("dog", "noun") not in pairs and ("ice cream", "noun") not in pairs
    assert ("good", "noun") not in pairs and ("good", "adj") not in pairs
    assert ("hot dog", "noun") in pairs  # exact match only, not substrings
    assert sorted(out.excluded) == sorted(
        [("dog", "noun"), ("ice cream", "noun"), ("good", "noun"), ("good", "adj")]
    )
    assert len(out) == len(lex) - 4
    same = L.Lexicon(["Dog", "cat"], ["noun", "noun"]).without("dog")
    assert same.words == ["cat"]
    with pytest.raises(OODInputError, match="POS"):
        L.Lexicon(["a"], ["verb"])


def test_word_list_errors_name_file_and_line_but_quote_no_content(tmp_path):
    """The App may read a file a user named: refusals must not echo what the file holds."""
    secret = tmp_path / "secret.txt"
    secret.write_text("# header\nroot\tx:0:0:TOPSECRET-hash:/root\n")
    with pytest.raises(OODInputError) as e:
        L.read_word_list(secret)
    msg = str(e.value)
    assert "secret.txt" in msg and "line 2" in msg and "'noun' or 'adj'" in msg
    assert "TOPSECRET" not in msg and "root" not in msg.replace(str(tmp_path), "")
    binary = tmp_path / "binary.dat"
    binary.write_bytes(b"dog\ncat\n\xff\xfeTOPSECRET\n")
    with pytest.raises(OODInputError) as e:
        L.read_word_list(binary)
    msg = str(e.value)
    assert "binary.dat" in msg and "line 3" in msg and "UTF-8" in msg and "TOPSECRET" not in msg


def _first_sense_files():
    """Noun lemma -> lexicographer file of its first sense, read from the raw database files.

    Independent of NLTK: index.noun lists a lemma's synset offsets by decreasing sense
    frequency; field 2 of a data.noun line is the synset's lexicographer file number.
    """
    lex_file = {}
    with open(DEBIAN_WORDNET / "data.noun", encoding="utf-8") as f:
        for line in f:
            if not line.startswith(" "):
                offset, filenum = line.split()[:2]
                lex_file[int(offset)] = L.LEXICOGRAPHER_FILES[int(filenum)]
    out = {}
    with open(DEBIAN_WORDNET / "index.noun", encoding="utf-8") as f:
        for line in f:
            if not line.startswith(" "):
                fields = line.split()
                out[fields[0].replace("_", " ")] = lex_file[int(fields[-int(fields[2])])]
    return out


def test_paper_vocabulary_rule_on_debian_wordnet(debian_lexicon, wordnet_cache):
    paper = L.load_lexicon(nltk_data_paths=[], cache_dir=wordnet_cache)  # the default vocabulary
    assert paper.vocabulary == "paper" and debian_lexicon.vocabulary == "all"
    first = _first_sense_files()
    kept_nouns = {w for w, f in first.items() if f in L.PAPER_NOUN_FILES}
    all_adjs = {w for w, p in zip(debian_lexicon.words, debian_lexicon.pos) if p == "adj"}
    nouns = [w for w, p in zip(paper.words, paper.pos) if p == "noun"]
    adjs = [w for w, p in zip(paper.words, paper.pos) if p == "adj"]
    assert set(nouns) == kept_nouns and set(adjs) == all_adjs - kept_nouns
    assert (len(nouns), len(adjs)) == (61904, 20713)
    # 15% per part of speech: the number of negatives NegLabel mines from this vocabulary.
    assert int(0.15 * len(nouns)) + int(0.15 * len(adjs)) == 12391
    assert int(0.15 * 117798) + int(0.15 * 21479) == 20890  # vocabulary="all"
    # person / feeling / attribute nouns are left out; a noun-and-adjective word stays a noun.
    assert "dog" in nouns and "teacher" not in nouns and "happiness" not in nouns
    assert "iron" in nouns and "iron" not in adjs and "happy" in adjs
    assert "blue" in adjs and "blue" not in nouns  # its first noun sense is an attribute
    with pytest.raises(OODInputError, match="vocabulary must be one of"):
        L.load_lexicon(nltk_data_paths=[], cache_dir=wordnet_cache, vocabulary="wordnet")
