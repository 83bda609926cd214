"""mmzoo: classic vision-language models assembled from shared parts.

``models()``, ``build(name, overrides)`` and ``from_pretrained(run_dir)`` are the public
API; ``python -m mmzoo.run`` trains and evaluates, ``python -m mmzoo.leaderboard``
compares runs, ``python -m mmzoo.chat`` talks about an image with a trained model.
"""

from mmzoo.api import build, compose_config, from_pretrained, models

__version__ = "0.1.0"
__all__ = ["build", "compose_config", "from_pretrained", "models", "__version__"]
