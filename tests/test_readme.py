"""Every Python snippet of the README's user sections runs, in order, on a small demo dataset.

The sections from the top through "The FiftyOne App" (install, quick starts, demo, SDK,
evaluation, App) are what users copy first. Their ```python blocks are executed one after
the other in one namespace against a small ``ood-demo-fashion-mnist`` built with the demo's
own code (real Fashion-MNIST images) and scored by ``run_demo``. A block is skipped only when
an HTML comment ``<!-- readme-test: skip (reason) -->`` right above it says why; the list of
skipped blocks is pinned, so a new snippet cannot be skipped silently.
"""

import io
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: the README's user sections end where the reference sections start
END_HEADING = "## Options"
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((?P<reason>[^)]+)\)\s*-->")
#: first line of each block that may be skipped, with the reason it must give
EXPECTED_SKIPS = {
    'ood.compute_pyramid_embeddings(dataset, "ood_patch_embeddings", patches_field="ground_truth")': "Detections",
    "import ood_core as ood": "CLIP weights",
}


def readme_python_blocks():
    """``[(line number, code, skip reason or None)]`` of the user sections' python blocks."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        text = f.read()
    text = text[:text.index(END_HEADING)]
    blocks = []
    for match in re.finditer(r"```python\n(.*?)```", text, flags=re.S):
        before = text[:match.start()].rstrip().splitlines()
        skip = SKIP.search(before[-1]) if before else None
        line = text[:match.start()].count("\n") + 1
        blocks.append((line, match.group(1), skip.group("reason") if skip else None))
    return blocks


def test_only_the_pinned_blocks_are_skipped_and_each_says_why():
    blocks = readme_python_blocks()
    assert len(blocks) >= 8
    skipped = {code.strip().splitlines()[0]: reason for _, code, reason in blocks if reason}
    assert set(skipped) == set(EXPECTED_SKIPS)
    for first, needed in EXPECTED_SKIPS.items():
        assert needed in skipped[first]


@pytest.fixture
def demo_dataset(tmp_path, monkeypatch):
    """A small demo under the README's dataset name, scored like ``python -m ood_core.demo`` does."""
    import fiftyone as fo

    from ood_core import demo

    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the audit's default report goes to ~/fiftyone
    ds = demo.build_demo_dataset(num_trusted=160, num_test_id=100, num_test_ood=40, label_noise=0.15,
                                 images_dir=str(tmp_path / "images"))
    assert ds.name == "ood-demo-fashion-mnist"
    demo.run_demo(ds, batch_size=32, num_workers=0, k=10, lof_k=10, progress=False, out=io.StringIO())
    yield ds
    fo.delete_dataset(ds.name)


def test_readme_snippets_run_on_the_demo(demo_dataset, capsys):
    ran = 0
    namespace = {"__name__": "readme"}
    for line, code, skip in readme_python_blocks():
        if skip:
            continue
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except Exception as e:
            raise AssertionError(f"README.md python block at line {line} failed: {e!r}\n{code}") from e
        ran += 1
    assert ran >= 7
    # what the snippets promise actually happened
    ds = demo_dataset
    ds.reload()
    summary = namespace["summary"]
    assert os.path.isfile(summary["report_path"]) and summary["num_ood_flagged"] > 0
    assert "ood_audit" in namespace["ood"].list_ood_runs(ds)
    assert ds.has_field("ood_score_123") and "ood_knn_sdk" in namespace["ood"].list_ood_runs(ds)
    assert not ds.has_field("ood_all_flag")  # delete_flags removed the flags again
    assert namespace["scores"].shape == (40,)
