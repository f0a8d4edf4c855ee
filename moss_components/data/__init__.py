"""The built-in spoken corpus and the data pipeline of every stage.

- ``facts.py`` (+ ``facts.json``), ``voices.py``, ``espeak.py``, ``synth_corpus.py``: the corpus generator.
- ``manifest.py``, ``audio_io.py``, ``check.py``, ``importers.py``, ``text_norm.py``: the manifest format, loading,
  validation and import of real corpora.
- ``speech_cache.py``: speech ids cached by ``moss-speech tokenize``.
- ``grid.py``, ``pretrain_tasks.py``, ``sft.py``, ``packing.py``: the ``(L, 2)`` grids of every LM task, and batching.

Kept free of imports here so that synthesis worker processes start fast.
"""
