"""LightningModules: one base (freezing by recipe, optimiser groups, parameter counts,
checkpoint export) and thin subclasses per model family."""
