"""Poison detectors: is a training set poisoned, before a training run is spent on it?

A detector is a plugin like an attack or a defense (the ``register_detectors`` hook): it reads a
suspect training set (:class:`~uebench.detectors.base.SuspectSet`) and returns a
:class:`~uebench.detectors.base.Verdict` — a score, the threshold it is compared with, the
verdict, and what the threshold was calibrated on.  ``uebench detect`` scores a cell's released
set or a dataset a user brings; ``uebench.detect`` writes the rows.
"""
