"""The ``txmon`` command line, one module per area; each exposes ``register(app)``.

The command line is the composition root: it may import ``models``, ``streams`` and ``retrain``
(lazily, inside commands, so ``txmon --help`` stays fast); nothing else in ``txmon`` does.
"""
