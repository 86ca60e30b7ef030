"""Configuration of the multi-view mammography transformer (local ViT per view, global transformer per exam)."""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

DEFAULT_VIEW_NAMES = ("L-CC", "L-MLO", "R-CC", "R-MLO")
ENCODER_TYPES = ("vit", "deit")
GLOBAL_TOKENS = ("all", "cls")
LATERALITIES = ("L", "R")
VIEW_POSITIONS = ("CC", "MLO")


class MultiViewMammoConfig(PreTrainedConfig):
    r"""
    Configuration for [`MultiViewMammoForExamClassification`].

    Args:
        encoder (`ViTConfig` / `DeiTConfig` or `dict`, *optional*):
            The local encoder shared by all views (default: a ViT-Base/16 config). Its `image_size` is the size of
            every view.
        view_names (`list[str]`, defaults to `["L-CC", "L-MLO", "R-CC", "R-MLO"]`):
            The view slots of an exam, in the order of `pixel_values[:, v]`; each is `<L|R>-<CC|MLO>`.
        num_global_layers (`int`, defaults to 2):
            Transformer layers over the tokens of all views of an exam.
        num_global_attention_heads (`int`, *optional*):
            Attention heads of the global layers (default: the encoder's).
        global_intermediate_size (`int`, *optional*):
            MLP size of the global layers (default: the encoder's).
        global_dropout (`float`, defaults to 0.0):
            Dropout on the global layers' residual branches and attention.
        global_tokens (`str`, defaults to `"all"`):
            What each view contributes to the global transformer: `"all"` its tokens (class token + patches), or
            `"cls"` only its class token (cheaper; cross-view reasoning then sees per-view summaries).
        classifier_dropout (`float`, defaults to 0.0):
            Dropout before the exam-level classifier.
        initializer_range (`float`, defaults to 0.1):
            Standard deviation of the normal initialisation of the new (non-encoder) weights: global layers, exam
            token, classifier. Larger than ViT's 0.02 on purpose: with 0.02 the freshly initialised global attention
            is near uniform and its gradients tiny, and on the synthetic cross-view task the exam head stayed at
            chance for 300 fine-tuning steps, where 0.1 reached AUC 1.0 (same encoder, same data).
        view_embedding_init_std (`float`, defaults to 1.0):
            Initial scale of the laterality and view-position embeddings. The encoder's tokens leave its final layer
            norm at unit scale, so embeddings at ViT's 0.02 (2% of that) barely mark which view a token
            comes from, and pairing the views of a breast then sits on a long plateau; at unit scale it is learned
            within ~150 steps on the synthetic task (`hf_deitcxr.mammo.synthetic`).
        orientation (`str`, defaults to `"laterality"`):
            How views were oriented before training (see `hf_deitcxr.mammo.dataset.orient`); inference must do the
            same.
    """

    model_type = "mammo_multiview"
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="vit")}

    encoder: PreTrainedConfig | dict | None = None
    view_names: list[str] | tuple[str, ...] = DEFAULT_VIEW_NAMES
    num_global_layers: int = 2
    num_global_attention_heads: int | None = None
    global_intermediate_size: int | None = None
    global_dropout: float = 0.0
    global_tokens: str = "all"
    classifier_dropout: float = 0.0
    initializer_range: float = 0.1
    view_embedding_init_std: float = 1.0
    orientation: str = "laterality"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.view_names = list(self.view_names)
        if self.encoder.model_type not in ENCODER_TYPES:  # before reading its fields below
            raise ValueError(f"encoder must be a ViT or DeiT config ({ENCODER_TYPES}), got {self.encoder.model_type!r}")
        if self.num_global_attention_heads is None:
            self.num_global_attention_heads = self.encoder.num_attention_heads
        if self.global_intermediate_size is None:
            self.global_intermediate_size = self.encoder.intermediate_size
        self.validate_multiview_fields()

    @property
    def hidden_size(self) -> int:
        return self.encoder.hidden_size

    @property
    def image_size(self) -> int:
        return self.encoder.image_size

    @property
    def num_channels(self) -> int:
        return self.encoder.num_channels

    def view_parts(self) -> list[tuple[int, int]]:
        """(laterality index, view-position index) of every view slot, e.g. "R-MLO" -> (1, 1)."""
        return [(LATERALITIES.index(name.split("-")[0]), VIEW_POSITIONS.index(name.split("-")[1]))
                for name in self.view_names]

    def validate_multiview_fields(self) -> None:
        """Raise a `ValueError` naming the first invalid field."""
        if self.encoder.model_type not in ENCODER_TYPES:
            raise ValueError(f"encoder must be a ViT or DeiT config ({ENCODER_TYPES}), got {self.encoder.model_type!r}")
        names = self.view_names
        if not names or len(set(names)) != len(names):
            raise ValueError(f"view_names must be distinct and non-empty, got {names}")
        for name in names:
            parts = str(name).split("-")
            if len(parts) != 2 or parts[0] not in LATERALITIES or parts[1] not in VIEW_POSITIONS:
                raise ValueError(f"view name {name!r} is not <L|R>-<CC|MLO>")
        if not isinstance(self.num_global_layers, int) or self.num_global_layers < 1:
            raise ValueError(f"num_global_layers must be a positive integer, got {self.num_global_layers!r}")
        if self.hidden_size % self.num_global_attention_heads:
            raise ValueError(f"hidden size {self.hidden_size} is not a multiple of num_global_attention_heads "
                             f"{self.num_global_attention_heads}")
        if self.global_tokens not in GLOBAL_TOKENS:
            raise ValueError(f"global_tokens must be one of {GLOBAL_TOKENS}, got {self.global_tokens!r}")
        if not isinstance(self.view_embedding_init_std, (int, float)) or self.view_embedding_init_std <= 0:
            raise ValueError(f"view_embedding_init_std must be positive, got {self.view_embedding_init_std!r}")
        for name in ("global_dropout", "classifier_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
        if self.orientation not in ("laterality", "auto", "none"):
            raise ValueError(f"orientation must be 'laterality', 'auto' or 'none', got {self.orientation!r}")


__all__ = ["MultiViewMammoConfig"]
