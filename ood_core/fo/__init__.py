"""The FiftyOne layer: the only package of ``ood_core`` that imports fiftyone.

It reads views, computes through the numpy/torch algorithm modules, writes
fields and records every computation as a FiftyOne custom run:

- :mod:`.runs`: the all-or-nothing write path and its run record (reading records: :mod:`.run_records`,
  :mod:`.run_info`; the run kinds: :mod:`.run_kinds`);
- :mod:`.items`: public readers/writers of per-sample and per-object values;
- :mod:`.embeddings`, :mod:`.scores`, :mod:`.similarity`, :mod:`.clip_embeddings`, :mod:`.neglabel`, :mod:`.rap`,
  :mod:`.adaneg`: computations;
- :mod:`.evaluation`, :mod:`.experiments`, :mod:`.label_report`: metrics, flags, workflows;
- :mod:`.coordination`: the MongoDB lock and job document of sharded extraction.

Users call these through the lazy public namespace (``import ood_core as ood``).
"""
