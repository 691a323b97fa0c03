"""Property-based fuzzing of what icnd reads from outside: frames, messages and config files.

``targets.py`` holds the targets (a hypothesis strategy and a check each), ``generators.py``
the strategies, ``test_fuzz.py`` the short pass that ``make test`` runs, and ``__main__.py``
the long run behind ``make fuzz`` (``python -m tests.fuzz --help``). See docs/RELIABILITY.md.
"""
