"""mmzoo's Hydra config tree, installed as the package ``mmzoo.conf``.

It lives at the top of the repository (``conf/``) and is mapped into the package by
``pyproject.toml``, so an installed wheel finds it through ``pkg://mmzoo.conf``. Each
folder is a config group whose files are its named presets.
"""
