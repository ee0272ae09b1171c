"""Batch scoring mechanics, one job a module, under the predict job (:mod:`tiering.predict`).

- :mod:`~tiering.scoring.frames`: the scores frame (Arrow schema, the model-spec check, scoring feature
  frames, reading and writing part files); also used by the Python API.
- :mod:`~tiering.scoring.as_of`: the as_of rules (how far after the data an as_of may be; the warning
  for an as_of before the model's training as_of).
- :mod:`~tiering.scoring.run_folder`: the run folder, its checkpoint for resume, locks, stale folders
  left by killed runs, SIGTERM as SystemExit.
- :mod:`~tiering.scoring.job`: what the stages of one run share, and the refusal checks they apply.
- :mod:`~tiering.scoring.output`: where a batch goes: ``--out`` (built before the store commits) and
  the scores store.
- :mod:`~tiering.scoring.hysteresis`: the previous batch's tiers applied to each chunk.
- :mod:`~tiering.scoring.duckdb_path`, :mod:`~tiering.scoring.spark_path`: the two engines' stages.

Imports point down: predict imports scoring; scoring never imports predict. Nothing is re-exported
here, so importing the package loads none of its modules.
"""
