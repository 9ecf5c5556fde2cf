"""Tiny random open_clip models of the non-CLIP families, and the tokenizers they need, built
in the test (the real tokenizers are hub downloads): a SentencePiece-style BPE tokenizer in
Hugging Face's file layout (tokenizer.json, tokenizer_config.json) assembled with `tokenizers`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = (  # noqa: SIM905
    "a photo of the dog cat beach sunset mountain city street car red blue green two three "
    "children playing in park snow winter summer food table people walking bicycle river "
    "bridge night lights boat sea tree flower house window kitchen"
).split()


def build_tokenizer(folder: Path, vocab_size: int = 400, xlmr: bool = False) -> Path:
    """A BPE tokenizer with Metaspace pre-tokenisation, byte fallback and an end-of-sequence
    token appended, as SentencePiece-derived tokenizers (SigLIP's) are; `xlmr` gives XLM-R's
    special tokens instead (<s> 0, <pad> 1, </s> 2, <unk> 3, text framed by <s> ... </s>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    specials = ["<s>", "<pad>", "</s>", "<unk>"] if xlmr else ["<pad>", "</s>", "<unk>"]
    alphabet = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials + alphabet, show_progress=False
    )
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, 8)) for _ in range(400)] + ["猫 犬 海 東京 😀 café"]
    tokenizer.train_from_iterator(corpus, trainer)
    frame = ["<s>", "</s>"] if xlmr else ["</s>"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=" ".join(["<s>"] * xlmr + ["$A", "</s>"]),
        special_tokens=[(t, tokenizer.token_to_id(t)) for t in frame],
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "pad_token": "<pad>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "model_max_length": 64,
                **({"bos_token": "<s>"} if xlmr else {}),
            }
        )
    )
    return folder


def siglip_config(tokenizer_dir: Path) -> dict:
    """SigLIP2's layout in miniature: a timm ViT with attention-pool ('map') image tower and
    a bidirectional text tower pooled at the last token, canonicalised text."""
    return {
        "embed_dim": 192,  # the trunk's width: with timm_proj "none" there is no projection
        "init_logit_bias": -10,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 224,
            "timm_model_name": "vit_tiny_patch16_224",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": "none",
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 400,
            "hf_tokenizer_name": str(tokenizer_dir),
            "tokenizer_kwargs": {"clean": "canonicalize"},
            "width": 32,
            "heads": 2,
            "layers": 2,
            "no_causal_mask": True,
            "proj_bias": True,
            "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6},
            "act_kwargs": {"approximate": "tanh"},
        },
    }


def xlmr_config(folder: Path) -> dict:
    """xlm-roberta-base-ViT-B-32's layout in miniature: a Hugging Face XLM-R text tower (its
    config in a local folder, as open_clip would fetch it from the hub), mean pooling, MLP
    projection, with the standard ViT image tower."""
    from transformers import XLMRobertaConfig

    tokenizer = build_tokenizer(folder / "tokenizer", xlmr=True)
    XLMRobertaConfig(
        vocab_size=400,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=40,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    ).save_pretrained(folder / "model")
    return {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 32,
            "hf_model_name": str(folder / "model"),
            "hf_tokenizer_name": str(tokenizer),
            "hf_model_pretrained": False,
            "hf_proj_type": "mlp",
            "hf_pooler_type": "mean_pooler",
        },
    }


def mobileclip_config() -> dict:
    """MobileCLIP2's layout in miniature: a timm convolutional image tower (ConvNeXt here)
    and a bidirectional CLIP-BPE text tower."""
    return {
        "embed_dim": 32,
        "custom_text": True,
        "vision_cfg": {
            "timm_model_name": "convnext_atto",
            "timm_model_pretrained": False,
            "timm_pool": "avg",
            "timm_proj": "linear",
            "image_size": 64,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
            "no_causal_mask": True,
        },
    }


def eva02_config() -> dict:
    """EVA02-B-16's layout in miniature: timm's EVA02 image tower (rotary position embedding,
    SwiGLU MLP, class-token pooling, its head as the projection) at timm's smallest EVA02,
    which is built at its own 224 px, and a causal CLIP-BPE text tower."""
    return {
        "embed_dim": 32,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 224,
            "timm_model_name": "eva02_tiny_patch14_224",
            "timm_model_pretrained": False,
            "timm_pool": "token",
            "timm_proj": None,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }


def pe_config() -> dict:
    """PE-Core-T-16-384's layout in miniature: timm's PE-Core tiny image tower (rotary 2D
    positions, attention-pool 'map' head, its head as the projection) at its own 384 px, and
    a causal CLIP-BPE text tower with PE's 32-token context."""
    return {
        "embed_dim": 32,
        "custom_text": True,
        "vision_cfg": {
            "image_size": 384,
            "timm_model_name": "vit_pe_core_tiny_patch16_384",
            "timm_model_pretrained": False,
            "timm_pool": "map",
            "timm_proj": None,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    }


def nllb_config(folder: Path) -> dict:
    """nllb-clip-base's layout in miniature: the encoder of a Hugging Face M2M100 (NLLB) model
    as text tower (scaled word embedding, sinusoidal positions), first-token pooling, linear
    projection, and the standard ViT image tower.  Config and tokenizer in a local folder, as
    open_clip would fetch them from the hub; the tokenizer frames text as NLLB's does."""
    from transformers import M2M100Config

    tokenizer = build_tokenizer(folder / "tokenizer", xlmr=True)
    M2M100Config(
        vocab_size=400,
        d_model=32,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=64,
        scale_embedding=True,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        decoder_start_token_id=2,
    ).save_pretrained(folder / "model")
    return {
        "embed_dim": 32,
        "vision_cfg": {
            "image_size": 32,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 32,
            "hf_model_name": str(folder / "model"),
            "hf_tokenizer_name": str(tokenizer),
            "hf_model_pretrained": False,
            "hf_proj_type": "linear",
            "hf_pooler_type": "cls_pooler",
        },
    }


def varied_strings(n: int, seed: int = 0) -> list[str]:
    """Captions and queries of every kind a user may type: words, case, punctuation, digits,
    CJK, emoji, accents, HTML entities, odd whitespace, and texts far over the context."""
    rng = np.random.default_rng(seed)
    extras = list("猫犬海東京大阪北京한국어😀🐶🏖️👨‍👩‍👧éüñçØß") + [
        "&amp;", "&lt;b&gt;", "_", "--", "...", "!?", "'s", "\t", "\n", "  ", "#1", "100%",
        "e-mail", "C++", "naïve", "ＦＵＬＬ", "Ⅻ",
    ]  # fmt: skip
    texts = ["", " ", "dog", "DOG", "a photo of a dog.", "😀", "猫", "&amp;&amp;"]
    while len(texts) < n:
        length = int(rng.choice([1, 3, 8, 20, 60]))
        parts = []
        for _ in range(length):
            pick = rng.random()
            if pick < 0.6:
                word = str(rng.choice(WORDS))
                parts.append(word.upper() if rng.random() < 0.1 else word)
            elif pick < 0.9:
                parts.append(str(rng.choice(extras)))
            else:
                parts.append(str(rng.integers(0, 10000)))
        glue = " " if rng.random() < 0.8 else ""
        texts.append(glue.join(parts))
    return texts
