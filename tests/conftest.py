import os

# Nothing may be fetched from the Hub in tests, and Gradio must not phone home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

LABELS = ["normal", "pneumonia", "covid"]


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


@pytest.fixture
def tiny_student():
    from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher

    torch.manual_seed(0)
    return DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).eval()
