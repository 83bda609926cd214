"""Data: img2dataset-layout shards, the streaming webdataset pipeline, the embedded
``shapes`` dataset, tokenizers for tiny models, prompt templates and collators."""
