"""Offline stand-ins for the hub files some architectures fetch before any weights load, so
`bench query` can time them with random weights on a machine without the hub.

SigLIP, SigLIP2 and XLM-R models name a Hugging Face tokenizer (and XLM-R a Hugging Face
text config) that open_clip downloads at creation.  Here a small tokenizer in the same file
layout is assembled with the `tokenizers` library, and XLM-R base's published config values
are written locally; a copy of the model's open_clip config pointing at them is registered
under the same name through $CLIPSEARCH_MODEL_CONFIGS (child processes see it too).  The
architecture, and so the time per query, is the real one; the tokenizer's vocabulary is not
(the embedding table keeps the real size, so the model's memory and load time are real).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..model.spec import CONFIG_ENV, model_configs

# xlm-roberta-base's config.json on the Hugging Face hub.
XLMR_BASE = {
    "vocab_size": 250002,
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "layer_norm_eps": 1e-5,
}
TEXT_CONFIGS = {"xlm-roberta-base": XLMR_BASE}
WORDS = (  # noqa: SIM905
    "a photo of the dog cat on beach sunset mountain city street car red blue green two "
    "children playing in park snow winter summer food table people walking bicycle river"
).split()


def needs_standins(model: str) -> bool:
    """Whether `model`'s config names hub files (a config registered in-process names none
    we can see)."""
    path = model_configs().get(model)
    if path is None:
        return False
    text = json.loads(path.read_text()).get("text_cfg", {})
    return bool(text.get("hf_tokenizer_name") or text.get("hf_model_name"))


def register_standins(model: str, folder: Path) -> None:
    """Write the stand-ins under `folder` and register `model`'s config pointing at them."""
    config = json.loads(model_configs()[model].read_text())
    text = config["text_cfg"]
    xlmr = text.get("hf_model_name") in TEXT_CONFIGS
    if text.get("hf_tokenizer_name"):
        text["hf_tokenizer_name"] = str(build_tokenizer(folder / "tokenizer", xlmr=xlmr))
    if text.get("hf_model_name"):
        from transformers import XLMRobertaConfig

        if not xlmr:
            raise RuntimeError(f"no offline stand-in for {text['hf_model_name']}'s config")
        XLMRobertaConfig(**XLMR_BASE).save_pretrained(folder / "text-config")
        text["hf_model_name"] = str(folder / "text-config")
    configs = folder / "configs"
    configs.mkdir(parents=True, exist_ok=True)
    (configs / f"{model}.json").write_text(json.dumps(config))
    os.environ[CONFIG_ENV] = os.pathsep.join(
        filter(None, [os.environ.get(CONFIG_ENV, ""), str(configs)])
    )


def build_tokenizer(folder: Path, xlmr: bool = False) -> Path:
    """A small SentencePiece-style BPE tokenizer (Metaspace, byte fallback) with SigLIP's
    special tokens, or XLM-R's (<s> 0, <pad> 1, </s> 2, <unk> 3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"] if xlmr else ["<pad>", "</s>", "<unk>"]
    alphabet = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=1000, special_tokens=specials + alphabet, show_progress=False
    )
    tokenizer.train_from_iterator([" ".join(WORDS)] * 4, trainer)
    frame = ["<s>", "</s>"] if xlmr else ["</s>"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=" ".join(["<s>"] * xlmr + ["$A", "</s>"]),
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in frame],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "pad_token": "<pad>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        **({"bos_token": "<s>"} if xlmr else {}),
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(settings))
    return folder
