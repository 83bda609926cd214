"""Evaluation shared across the zoo: retrieval, zero-shot classification, captioning, VQA."""
