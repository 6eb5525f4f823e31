"""The CLIP negative-label family on numpy/torch (no FiftyOne).

- :mod:`.encoder`: open_clip image/text encoder with safe weight loading;
- :mod:`.lexicon`: WordNet (NegLabel's "paper" vocabulary or all of it) or a word list;
- :mod:`.text_cache`: disk cache of text embeddings;
- :mod:`.neglabel`: NegLabel (zero-shot);
- :mod:`.rap` (+ :mod:`.rap_crops`, :mod:`.rap_stream`): RAP (few-shot, test-time updates);
- :mod:`.adaneg`: AdaNeg (zero-shot, NegLabel + a memory of test images).
"""
