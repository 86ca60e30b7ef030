"""What the Space shows about a served model: its card's name and the sections a user needs to judge a prediction.

The card is the folder's (or Hub repo's) README.md read with `huggingface_hub.ModelCard.load`; a local folder
without one gets the card `hf-deitcxr` would write for it (`build_model_card`: metrics.json, audit.json). Only the
training data, method, results and shortcut audit sections are kept; a card without them is shown whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import ModelCard

logger = logging.getLogger(__name__)

KEPT_SECTIONS = ("training data", "method", "results", "shortcut audit")
MAX_CARD_CHARS = 20_000  # a card is the operator's text, but a huge one would make the page unusable


@dataclass(frozen=True)
class ModelInfo:
    name: str  # the card's model_name, else the folder name (or the Hub id)
    markdown: str  # the kept card sections; a line saying there is no card when there is none


def load_model_info(model_id: str) -> ModelInfo:
    """The card of a saved folder or Hub id; never raises (a missing or broken card is said so in the text)."""
    card = _load_card(model_id)
    fallback = Path(model_id).name if Path(model_id).is_dir() else model_id
    if card is None:
        return ModelInfo(fallback, "No model card (README.md) was found for this model.")
    name = str(getattr(card.data, "model_name", None) or card.data.to_dict().get("model_name") or fallback)
    return ModelInfo(name, card_sections(card.text)[:MAX_CARD_CHARS])


def _load_card(model_id: str) -> ModelCard | None:
    folder = Path(model_id)
    try:
        if folder.is_dir():
            readme = folder / "README.md"
            if readme.is_file():
                return ModelCard.load(readme)
            from ..model_card import build_model_card

            return build_model_card(folder)
        return ModelCard.load(model_id)
    except Exception as err:  # no card on the Hub, offline, a malformed file: the Space still serves the model
        logger.warning("no model card for %s: %s", model_id, err)
        return None


def card_sections(text: str) -> str:
    """The card's `## ` sections whose heading starts with one of KEPT_SECTIONS, in order; all of it if none does."""
    sections: list[list[str]] = []
    keep = False
    for line in text.splitlines():
        if line.startswith("## "):
            keep = line[3:].strip().lower().startswith(KEPT_SECTIONS)
            if keep:
                sections.append([])
        if keep:
            sections[-1].append(line)
    kept = "\n\n".join("\n".join(section).strip() for section in sections)
    return kept or text.strip()


__all__ = ["KEPT_SECTIONS", "ModelInfo", "card_sections", "load_model_info"]
