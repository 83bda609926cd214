"""Plain ``nn.Module`` parts (vision encoders, text encoders, bridges, language models).

Parts know nothing about Lightning or Hydra: they take plain constructor arguments and
expose a narrow interface, so any of them can be used on its own.
"""
