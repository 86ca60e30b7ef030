import os

# Nothing may be fetched from the Hub in tests, and Gradio must not phone home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The serving forward as before (fused PyTorch, nothing timed or exported at load); tests of the start-up choice
# (tests/serving/test_onnx_forward.py) ask for it explicitly.
os.environ.setdefault("HF_DEITCXR_FORWARD", "torch")

import pytest  # noqa: E402
import torch  # noqa: E402

from tests.helpers.tiny_models import tiny_deit_kwargs  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))



@pytest.fixture
def one_torch_thread():
    """torch on one thread for the test (bit-stable short training runs), the previous count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_student():
    from hf_deitcxr import DeiTCXRConfig, DeiTCXRForImageClassificationWithTeacher

    torch.manual_seed(0)
    return DeiTCXRForImageClassificationWithTeacher(DeiTCXRConfig(**tiny_deit_kwargs())).eval()
