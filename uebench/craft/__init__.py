"""Noise: which one a cell needs (:class:`~uebench.craft.request.NoiseRequest`), how it is made or
found (:func:`~uebench.craft.crafting.craft`, through :mod:`~uebench.craft.cache`), and the
solvers attacks share (:mod:`~uebench.craft.solvers`)."""
