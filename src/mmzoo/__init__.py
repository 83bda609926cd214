"""mmzoo: classic vision-language models assembled from shared parts.

``models()``, ``build(name, overrides)`` and ``from_pretrained(run_dir)`` are the public
API; ``python -m mmzoo.run`` trains and evaluates, ``python -m mmzoo.leaderboard``
compares runs, ``python -m mmzoo.chat`` talks about an image with a trained model.
The API is imported lazily so that ``python -m mmzoo.<tool> --help`` stays fast.
"""

from typing import Any

from mmzoo.version import __version__

__all__ = ["build", "compose_config", "from_pretrained", "models", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("build", "compose_config", "from_pretrained", "models"):
        from mmzoo import api

        return getattr(api, name)
    raise AttributeError(f"module 'mmzoo' has no attribute {name!r}")
