"""What README.md (and docs/*.md) say about the code's surface, checked against the code.

Users copy calls, keyword names, defaults, operator names, file references and benchmark numbers from the README.
``tests/test_readme.py`` runs the snippets of its user sections; this file checks the rest without a dataset or a
model: every check is a function of a document's text that returns the problems it finds (empty = the text agrees
with the code). The ``test_*_catches_*`` tests at the end feed each check a copy of the README with one fact
changed, so a check that stopped seeing its kind of drift fails too.
"""

import ast
import glob
import inspect
import json
import math
import os
import re

import numpy as np
import pytest

import ood_core as ood
from ood_core import detectors

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DOCS = [README] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))
#: folders of this repository whose files the documents name by path
REPO_DIRS = ("tests", "benchmarks", "ood_core", "operators", "docs")
#: the entry points whose keyword options a user sets: each must be named in the README
ENTRY_POINTS = ("audit", "compute_pyramid_embeddings", "compute_ood_scores", "compute_label_issues",
                "flag_samples", "evaluate_ood_run", "compute_clip_embeddings", "compute_neglabel_scores",
                "compute_rap_scores", "compute_adaneg_scores", "compute_knn_scores_with_index",
                "compute_ood_visualization")
#: keyword parameters that are not user options: (entry point, name) -> why
NOT_USER_OPTIONS = {
    ("flag_samples", "item_scores"): "the scores a caller of this package already read (the audit, the panel)",
}


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def line_of(text, pos):
    return text.count("\n", 0, pos) + 1


def _blank(match):
    """The matched text as spaces, its line breaks kept (positions and line numbers stay right)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def code_spans(text):
    """``[(position, code)]`` of the inline code spans and the python blocks of a markdown text."""
    spans = [(m.start(1), m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, flags=re.S)]
    rest = re.sub(r"```.*?```", _blank, text, flags=re.S)
    rest = re.sub(r"``.*?``", _blank, rest)  # a span holding a backtick (``` `` ` `` ```)
    # an inline span may wrap onto the next line, never over a blank line
    spans += [(m.start(1), m.group(1)) for m in re.finditer(r"`([^`]+)`", rest) if "\n\n" not in m.group(1)]
    return spans


def _unquoted(text, start=0):
    """``(index, character, bracket depth after it)`` for each character of ``text`` from ``start`` that lies
    outside a quoted string (the quotes themselves left out)."""
    depth, quote = 0, None
    for j in range(start, len(text)):
        c = text[j]
        if quote:
            quote = None if c == quote else quote
        elif c in "\"'":
            quote = c
        else:
            depth += (c in "([{") - (c in ")]}")
            yield j, c, depth


def _inside_parens(s, open_at):
    """The text between the bracket at ``open_at`` and its match (to the end when unmatched)."""
    for j, c, depth in _unquoted(s, open_at):
        if depth == 0:
            return s[open_at + 1:j]
    return s[open_at + 1:]


def top_level_keywords(args):
    """The ``name=`` keywords at the top level of a call's argument text (``a == b`` and nested calls ignored)."""
    names, after = [], 0
    for i, c, depth in _unquoted(args):
        if i < after or depth != 0 or c in ")]}" or (i and (args[i - 1].isalnum() or args[i - 1] in "_.")):
            continue
        m = re.match(r"([A-Za-z_]\w*)\s*=(?!=)", args[i:])
        if m:
            names.append(m.group(1))
            after = i + m.end()
    return names


def _parameters(func):
    sig = inspect.signature(func)
    return set(sig.parameters), any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())


def call_problems(text, where="README.md"):
    """Calls of the public API (``ood.name(...)`` or ``name(...)`` for a public name) whose name or keyword the
    code lacks; ``make_detector("name", ...)`` with a detector or hyperparameter the registry lacks."""
    public = set(ood.__all__)
    problems = []
    for pos, code in code_spans(text):
        for m in re.finditer(r"\bood\.(\w+)", code):
            if m.group(1) not in public:
                problems.append(f"{where}:{line_of(text, pos + m.start())}: ood.{m.group(1)} is not public API")
        for m in re.finditer(r"(?<![\w.])(?:ood\.)?(\w+)\(", code):
            name = m.group(1)
            if name not in public:
                continue
            args = _inside_parens(code, m.end() - 1)
            at = f"{where}:{line_of(text, pos + m.start())}: {name}(...)"
            if name == "make_detector":
                method = re.match(r"\s*[\"'](\w+)[\"']", args)
                if method is None:
                    continue
                if method.group(1) not in detectors.detector_names():
                    problems.append(f"{at}: no detector {method.group(1)!r}")
                    continue
                params, any_keyword = set(detectors.detector_class(method.group(1))._param_names), False
            else:
                params, any_keyword = _parameters(getattr(ood, name))
            for keyword in top_level_keywords(args):
                if keyword not in params and not any_keyword:
                    problems.append(f"{at}: no parameter {keyword!r}")
    return problems


def option_coverage_problems(text):
    """Keyword options of the entry points that the README never names in code (`name` or `name=...`)."""
    words = set()
    for _, code in code_spans(text):
        words |= set(re.findall(r"[A-Za-z_]\w*", code))
    problems = []
    for entry in ENTRY_POINTS:
        for name, p in inspect.signature(getattr(ood, entry)).parameters.items():
            if p.kind == p.KEYWORD_ONLY and name not in words and (entry, name) not in NOT_USER_OPTIONS:
                problems.append(f"ood.{entry}: option {name!r} (default {p.default!r}) is not named in the README")
    return problems


def path_problems(text, where="README.md"):
    """Repository paths (``tests/...``, ``benchmarks/...``, ...) that do not exist, and test functions named in
    inline code (`` `test_...` ``) that no test file defines."""
    problems = []
    pattern = r"(?<![\w/.~-])((?:%s)/[\w./-]*\w)" % "|".join(REPO_DIRS)
    for m in re.finditer(pattern, text):
        if not os.path.exists(os.path.join(REPO, m.group(1))):
            problems.append(f"{where}:{line_of(text, m.start())}: no file {m.group(1)}")
    tests_source = "\n".join(read(p) for p in glob.glob(os.path.join(REPO, "tests", "*.py")))
    for m in re.finditer(r"`(test_\w+)`", text):
        if not re.search(r"def %s\(" % re.escape(m.group(1)), tests_source):
            problems.append(f"{where}:{line_of(text, m.start())}: no test function {m.group(1)}")
    return problems


def _plugin():
    """(plugin name, operator and panel names of fiftyone.yml, {label: name} of the operators and the panel)."""
    import yaml

    from operators import OPERATORS

    with open(os.path.join(REPO, "fiftyone.yml"), encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    names = list(spec.get("operators", [])) + list(spec.get("panels", []))
    labels = {}
    for cls in OPERATORS:
        config = cls().config
        labels[config.label] = config.name
    return spec["name"], names, labels


def operator_problems(text):
    """Operator URIs and operator labels (``**OOD: ...**``) of the README against fiftyone.yml and the operators;
    every operator of fiftyone.yml must appear in the README as its URI."""
    plugin, names, labels = _plugin()
    problems = []
    mentioned = set()
    for m in re.finditer(r"(@[\w-]+/[\w-]+)/(\w+)", text):
        mentioned.add(m.group(2))
        if m.group(1) != plugin or m.group(2) not in names:
            problems.append(f"README.md:{line_of(text, m.start())}: {m.group(0)} is not an operator of "
                            f"{plugin} (fiftyone.yml: {', '.join(names)})")
    for name in names:
        if name not in mentioned and name not in {v for k, v in labels.items() if f"**{k}**" in text}:
            problems.append(f"fiftyone.yml lists {name!r}, the README never names it ({plugin}/{name})")
    for m in re.finditer(r"\*\*(OOD: [^*]+)\*\*", text):  # every operator's label starts with "OOD: "
        if m.group(1) not in labels:
            problems.append(f"README.md:{line_of(text, m.start())}: no operator or panel is labelled "
                            f"{m.group(1)!r} (labels: {sorted(labels)})")
    return problems


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    return start, text[start:end if end >= 0 else len(text)]


def _table_rows(section):
    """The cells of each body row of the first markdown table of ``section``."""
    rows = []
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    for ln in lines[2:]:
        rows.append([c.strip() for c in ln.strip().strip("|").split(" | ")])
    return rows


#: a default the table gives in words (e.g. "every level ...")
PROSE = object()


def _default_cell(cell):
    """The literal a table's default cell states, or a marker for prose."""
    cell = cell.strip().strip("`")
    if cell.lower() in ("none", "-"):
        return None
    try:
        return ast.literal_eval(cell)
    except (ValueError, SyntaxError):
        return PROSE


def pyramid_table_problems(text):
    """The "Pyramid embeddings" option table: each option is a parameter of ``compute_pyramid_embeddings`` with the
    default the table states (a default given in words must be the code's ``None``: computed when left out)."""
    _, section = _section(text, "### Pyramid embeddings")
    params = inspect.signature(ood.compute_pyramid_embeddings).parameters
    problems = []
    rows = _table_rows(section)
    if not rows:
        return ["no option table under '### Pyramid embeddings'"]
    for cells in rows:
        names = re.findall(r"`(\w+)`", cells[0])
        defaults = [cells[1]] if len(names) == 1 else [c for c in cells[1].split(", ")]
        if len(defaults) != len(names):
            problems.append(f"row {cells[0]}: {len(names)} options but defaults {cells[1]!r}")
            continue
        for name, cell in zip(names, defaults):
            if name not in params:
                problems.append(f"option {name!r}: compute_pyramid_embeddings has no such parameter")
                continue
            stated, actual = _default_cell(cell), params[name].default
            if stated is PROSE:
                if actual is not None:
                    problems.append(f"option {name!r}: the table describes the default in words, the code's is "
                                    f"{actual!r}")
            elif stated != actual or type(stated) is not type(actual):
                problems.append(f"option {name!r}: the table says {cell!r}, the code's default is {actual!r}")
    return problems


TASK_WORDS = {"OOD": "ood", "wrong labels": "label_issues"}
#: how the table marks the default method of each scoring function
DEFAULT_MARKS = (("(default OOD)", "compute_ood_scores"), ("(default wrong labels)", "compute_label_issues"))


def detector_table_problems(text):
    """The "Detectors" table lists exactly the registered detectors, each with its task, and marks the defaults of
    ``compute_ood_scores`` and ``compute_label_issues``."""
    _, section = _section(text, "### Detectors")
    problems, listed = [], set()
    for cells in _table_rows(section):
        name = re.match(r"`(\w+)`", cells[0])
        if name is None:
            problems.append(f"row {cells[0]!r}: no method name")
            continue
        name = name.group(1)
        listed.add(name)
        if name not in detectors.detector_names():
            problems.append(f"{name!r} is not a registered detector")
            continue
        if TASK_WORDS.get(cells[1]) != detectors.detector_class(name).task:
            problems.append(f"{name!r}: task {cells[1]!r}, the registry's is {detectors.detector_class(name).task!r}")
        for marker, func in DEFAULT_MARKS:
            default = inspect.signature(getattr(ood, func)).parameters["method"].default
            if (marker in cells[0]) != (name == default):
                problems.append(f"{name!r}: {marker} {'marked' if marker in cells[0] else 'not marked'}, "
                                f"{func}'s default method is {default!r}")
    for name in set(detectors.detector_names()) - listed:
        problems.append(f"registered detector {name!r} is not in the Detectors table")
    return problems


#: README row of the robustness tables (a pattern of its method cell) -> method in robustness_raw.json ("best
#: anchor": the best anchor of each condition). A row the README adds must be added here, with its method.
OOD_ROWS = [
    (r"release before last: k-NN k=50", "previous knn k=50 deep"),
    (r"earlier release: k-NN k=\"auto\"", "knn k=auto.2 deep"),
    (r"earlier release: `pyramid_knn`, each image on its own .*no gate", "pyramid knn, no gate"),
    (r"earlier release: `pyramid_knn` \+ scored-set density ratio, no gate", "pyramid knn + ratio, no gate"),
    (r"last release: `pyramid_knn` \+ density ratio \+ component gate", "pyramid knn + ratio"),
    (r"\*\*default: the same, the density ratio weighted", "pyramid knn + weighted ratio"),
    (r"the default, each image on its own", "pyramid knn"),
    (r"`pyramid_knn` without labels", "pyramid knn no labels"),
    (r"`pyramid_knn` on the deepest level only", "pyramid knn deep only"),
    (r"Mahalanobis\+\+", "mahalanobis++ deep"),
    (r"score pyramid \(`level_fusion`", "fusion k=auto z mean lv=auto"),
    (r"k-NN k=1, deepest level", "knn k=1 deep"),
    (r"cleanlab OOD", "cleanlab OOD deep"),
    (r"k-NN k=1, all levels", "knn k=1 full"),
    (r"best anchor of each condition", "best anchor"),
]
LABEL_ROWS = [
    (r"previous default: label agreement k=20", "previous label agreement k=20 deep"),
    (r"weighted label votes, deepest level", "vote 1/d k=auto.5 deep"),
    (r"levels chosen by label agreement, one vote", "vote 1/d k=auto.5 lv=auto"),
    (r"averaged with a second vote", "vote 1/d k=auto.5 lv=auto + 2nd vote"),
    (r"a fifth of the margin", "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2"),
    (r"5-fold out-of-fold shrinkage-LDA", "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2 + LDA .5"),
    (r"last release: the same with 10 folds",
     "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2 + LDA .5 10-fold tempered"),
    (r"\*\*default: the same, the LDA averaged with a second one",
     "vote 1/d k=auto.5 lv=auto + 2nd vote + margin .2 + LDA .5 10-fold tempered + CL refit"),
    (r"best single anchor: label agreement k=10", "label agreement k=10 deep"),
    (r"cleanlab label quality \(deepest level\)", "cleanlab quality knn10 deep"),
    (r"best anchor of each condition", "best anchor"),
]


def _summary(conditions, method):
    """(mean AUROC, worst AUROC, mean FPR95) of ``method`` over ``conditions``; None when it did not run there.
    "best anchor": per condition the highest AUROC and the lowest FPR95 of the anchors."""
    aurocs, fprs = [], []
    for c in conditions:
        if method == "best anchor":
            anchors = [m for m in c["methods"].values() if m["role"] == "anchor" and not math.isnan(m["auroc"])]
            aurocs.append(max(m["auroc"] for m in anchors))
            fprs.append(min(m["fpr95"] for m in anchors))
        elif method in c["methods"] and not math.isnan(c["methods"][method]["auroc"]):
            aurocs.append(c["methods"][method]["auroc"])
            fprs.append(c["methods"][method]["fpr95"])
    return (float(np.mean(aurocs)), float(np.min(aurocs)), float(np.mean(fprs))) if aurocs else None


def _numbers(cell):
    cell = cell.replace("*", "")
    return None if "not run" in cell else [float(x) for x in re.findall(r"\d+\.\d+", cell)]


def _compare(row_name, stated, measured, what):
    if stated is None or measured is None:
        return [] if stated is None and measured is None else [
            f"{row_name!r} {what}: README {stated}, results {measured}"]
    if len(stated) != 3 or any(abs(s - m) > 0.0005 + 1e-9 for s, m in zip(stated, measured)):
        return [f"{row_name!r} {what}: README {stated}, benchmarks/results/robustness_raw.json "
                f"{[round(m, 3) for m in measured]}"]
    return []


def robustness_table_problems(text):
    """The two tables of "Why the defaults are what they are" against ``benchmarks/results/robustness_raw.json``
    (mean AUROC / worst AUROC / mean FPR95, three decimals)."""
    with open(os.path.join(REPO, "benchmarks", "results", "robustness_raw.json"), encoding="utf-8") as f:
        raw = json.load(f)
    _, section = _section(text, "### Why the defaults are what they are")
    tables = re.findall(r"((?:^\|.*\n)+)", section, flags=re.M)
    ood_table = next(t for t in tables if "103 conditions" in t.splitlines()[0])
    label_table = next(t for t in tables if "mean AUROC" in t.splitlines()[0])
    problems = []
    common = [c for c in raw["ood"] if c["group"] != "rare"]
    rare = [c for c in raw["ood"] if c["group"] == "rare"]
    for cells in _table_rows(ood_table):
        method = [m for pattern, m in OOD_ROWS if re.search(pattern, cells[1])]
        if len(method) != 1:
            problems.append(f"OOD row {cells[1]!r}: matches {method} in OOD_ROWS (exactly one needed)")
            continue
        problems += _compare(cells[1], _numbers(cells[2]), _summary(common, method[0]), f"{len(common)} conditions")
        problems += _compare(cells[1], _numbers(cells[3]), _summary(rare, method[0]), f"{len(rare)} rare")
    for cells in _table_rows(label_table):
        method = [m for pattern, m in LABEL_ROWS if re.search(pattern, cells[1])]
        if len(method) != 1:
            problems.append(f"wrong-label row {cells[1]!r}: matches {method} in LABEL_ROWS (exactly one needed)")
            continue
        stated = [float(c.replace("*", "")) for c in cells[2:5]]
        problems += _compare(cells[1], stated, _summary(raw["label"], method[0]), "46 conditions")
    return problems


def field_suffix_problems(text):
    """Field-name patterns ``<placeholder>_suffix`` of the README that no code writes (``f"{...}_suffix"``)."""
    source = "\n".join(read(p) for p in glob.glob(os.path.join(REPO, "ood_core", "**", "*.py"), recursive=True)
                       + glob.glob(os.path.join(REPO, "operators", "*.py")))
    problems = []
    for pos, code in code_spans(text):
        for m in re.finditer(r"<[\w ]+>_(\w+)(?![\w.])", code):  # not a file name (`<dataset>_ood_audit.html`)
            if not re.search(r"\}_%s[\"']" % re.escape(m.group(1)), source):
                problems.append(f"README.md:{line_of(text, pos + m.start())}: no code writes a field "
                                f"'..._{m.group(1)}' ({m.group(0)})")
    return problems


# --------------------------------------------------------------------------- the documents as they are


@pytest.mark.parametrize("path", DOCS, ids=os.path.basename)
def test_every_documented_call_names_public_functions_and_their_parameters(path):
    assert call_problems(read(path), os.path.relpath(path, REPO)) == []


def test_every_option_of_the_entry_points_is_named_in_the_readme():
    assert option_coverage_problems(read(README)) == []


@pytest.mark.parametrize("path", DOCS, ids=os.path.basename)
def test_every_file_and_test_the_documents_name_exists(path):
    assert path_problems(read(path), os.path.relpath(path, REPO)) == []


def test_operator_uris_and_labels_are_the_plugins():
    assert operator_problems(read(README)) == []


def test_pyramid_embeddings_table_states_the_code_defaults():
    assert pyramid_table_problems(read(README)) == []


def test_detectors_table_is_the_registry():
    assert detector_table_problems(read(README)) == []


def test_robustness_tables_are_the_stored_results():
    assert robustness_table_problems(read(README)) == []


def test_field_name_patterns_are_written_by_the_code():
    assert field_suffix_problems(read(README)) == []


# --------------------------------------------------------------------------- each check sees drift


def _changed(old, new):
    text = read(README)
    assert old in text, f"the README no longer holds {old!r}: pick another fact for this test"
    return text.replace(old, new, 1)


def test_call_check_catches_a_renamed_keyword_and_an_unknown_function():
    text = _changed('reference="trusted",\n                       label_field="ground_truth")',
                    'reference="trusted",\n                       labels_field="ground_truth")')
    assert any("no parameter 'labels_field'" in p for p in call_problems(text))
    text = _changed("ood.rename_ood_run(", "ood.rename_run(")
    assert any("ood.rename_run is not public" in p for p in call_problems(text))
    text = _changed('make_detector("pyramid_knn",\ncomponent_gate=None)', 'make_detector("pyramid_knn",\ngate=None)')
    assert any("no parameter 'gate'" in p for p in call_problems(text))


def test_option_check_catches_an_option_the_readme_drops():
    text = read(README)
    assert "score_reference" in text
    assert any("'score_reference'" in p for p in option_coverage_problems(text.replace("score_reference", "x")))


def test_path_check_catches_a_renamed_file_and_test():
    assert any("tests/test_map_safety2.py" in p
               for p in path_problems(_changed("tests/test_map_safety.py", "tests/test_map_safety2.py")))
    assert any("no test function test_multi_field_writes_commit_all" in p for p in path_problems(
        _changed("`test_multi_field_writes_commit_all_or_none`", "`test_multi_field_writes_commit_all`")))


def test_operator_check_catches_a_renamed_operator_and_label():
    problems = operator_problems(_changed("@fiftyone-ood/ood/score_ood", "@fiftyone-ood/ood/score_samples"))
    assert any("score_samples is not an operator" in p for p in problems)
    assert any("no operator or panel is labelled 'OOD: score images'" in p
               for p in operator_problems(_changed("**OOD: score samples**", "**OOD: score images**")))


def test_pyramid_table_check_catches_a_wrong_default():
    assert any("'chunk_size'" in p for p in pyramid_table_problems(_changed("| `chunk_size` | 1024 |",
                                                                            "| `chunk_size` | 512 |")))
    assert any("'batch_size'" in p for p in pyramid_table_problems(_changed("| `batch_size`, `num_workers` | 64, 1 |",
                                                                            "| `batch_size`, `num_workers` | 32, 1 |")))


def test_detector_table_check_catches_a_missing_detector_and_a_wrong_default_mark():
    text = read(README)
    row = re.search(r"^\| `mahalanobis_pp` .*\n", text, flags=re.M).group(0)
    assert any("'mahalanobis_pp' is not in the Detectors table" in p
               for p in detector_table_problems(text.replace(row, "", 1)))
    moved = _changed("| `pyramid_knn` (default OOD) |", "| `pyramid_knn` |").replace("| `knn` |",
                                                                                      "| `knn` (default OOD) |", 1)
    assert len([p for p in detector_table_problems(moved) if "(default OOD)" in p]) == 2


def test_robustness_check_catches_a_changed_number_and_an_unmapped_row():
    problems = robustness_table_problems(_changed("**0.953 / 0.651 / 0.185**", "**0.955 / 0.651 / 0.185**"))
    assert any("0.955" in p for p in problems)
    problems = robustness_table_problems(_changed("| wrong label | cleanlab label quality (deepest level) |",
                                                  "| wrong label | cleanlab label quality (all levels) |"))
    assert any("matches [] in LABEL_ROWS" in p for p in problems)


def test_field_suffix_check_catches_a_renamed_field():
    assert any("'..._p_value'" in p for p in field_suffix_problems(_changed("`<score>_pvalue`", "`<score>_p_value`")))
