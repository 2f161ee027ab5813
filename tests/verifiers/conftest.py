"""Tiny reward models built locally from configs with seeded random weights (no hub access)."""

from __future__ import annotations

from pathlib import Path

import pytest

CHAT = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}")
CORPUS = [
    "What is 2 + 3 ? Step 1 : add the numbers . Step 2 : the answer is 5 .",
    "compute 7 * 6 first multiply then check the answer is 42 ки + -",
    "The answer is \\boxed{ 12 } because 3 * 4 = 12 and 1 0 8 9",
]


def _tokenizer(path: Path, chat: bool) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<pad>", "<extra_0>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   additional_special_tokens=specials[2:])
    if chat:
        fast.chat_template = CHAT
    fast.save_pretrained(path)


def build_tiny(path: Path, kind: str, num_labels: int = 2, chat: bool = True) -> Path:
    """Save a 2-layer Qwen2 of ``kind`` (token-cls, causal-lm, seq-cls) with seed-0 weights."""
    import torch
    from transformers import (
        AutoTokenizer,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen2ForSequenceClassification,
        Qwen2ForTokenClassification,
    )

    _tokenizer(path, chat)
    vocab = len(AutoTokenizer.from_pretrained(path))
    config = Qwen2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                         max_position_embeddings=512, num_labels=num_labels, pad_token_id=1)
    cls = {"token-cls": Qwen2ForTokenClassification, "causal-lm": Qwen2ForCausalLM,
           "seq-cls": Qwen2ForSequenceClassification}[kind]
    torch.manual_seed(0)
    model = cls(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Local tiny PRMs/ORMs: qwen-prm (2 classes), shepherd (LM), skywork (value), orm."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("tiny-rm")
    return {
        "qwen-prm": build_tiny(root / "qwen-prm", "token-cls", 2),
        "math-shepherd": build_tiny(root / "shepherd", "causal-lm", chat=False),
        "skywork-prm": build_tiny(root / "skywork", "token-cls", 1, chat=False),
        "orm": build_tiny(root / "orm", "seq-cls", 1),
        "orm2": build_tiny(root / "orm2", "seq-cls", 2),
    }
