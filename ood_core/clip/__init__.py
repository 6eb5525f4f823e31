"""The CLIP negative-label family on numpy/torch (no FiftyOne).

- :mod:`.encoder`: open_clip image/text encoder with safe weight loading;
- :mod:`.lexicon`: WordNet (or a word list) as candidate negative labels;
- :mod:`.text_cache`: disk cache of text embeddings;
- :mod:`.neglabel`: NegLabel (zero-shot), :mod:`.rap`: RAP (few-shot, test-time updates).
"""
