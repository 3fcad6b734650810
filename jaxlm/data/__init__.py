"""Corpora, vocabularies and batching. Nothing here is imported by jaxlm.models."""
