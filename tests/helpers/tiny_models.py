"""The one chest X-ray label order of the tests, and the tiny DeiT every model test builds."""

from __future__ import annotations

# Sorted, as the data loaders order class folders: the order of every chest X-ray test.
LABELS = ["covid", "normal", "pneumonia"]


def tiny_deit_kwargs(**overrides) -> dict:
    """A 2-layer DeiT small enough for CPU tests (32 px, 8 px patches)."""
    kwargs = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
        id2label=dict(enumerate(LABELS)),
        label2id={name: i for i, name in enumerate(LABELS)},
    )
    kwargs.update(overrides)
    return kwargs
