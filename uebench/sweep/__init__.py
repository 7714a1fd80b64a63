"""Sweeps: a matrix file → cells (``matrix``) → done or to do (``plan``) → run (``local``)."""
