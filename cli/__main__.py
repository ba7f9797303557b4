"""``python -m cli``: the same as the ``edgectl`` command (local clusters start masters this way)."""

from .main import main

main()
