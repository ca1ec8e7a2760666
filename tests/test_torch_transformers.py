"""fuse_loss: a transformers causal LM trained with the fused loss equals the stock model.

Expected values come from the stock model itself (transformers' own forward and
``ForCausalLMLoss`` on the materialised logits), on small random configs (no downloads).
"""

from __future__ import annotations

import copy
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from crossent.torch.transformers import fuse_loss  # noqa: E402

VOCAB = 3000
COMMON = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, pad_token_id=0, bos_token_id=1,
              eos_token_id=2)

# Each architecture with its own head feature switched on at a size that matters.
CONFIGS = {
    "llama": (transformers.LlamaConfig, {}),
    "llama-tied": (transformers.LlamaConfig, dict(tie_word_embeddings=True)),
    "mistral": (transformers.MistralConfig, {}),
    "qwen2": (transformers.Qwen2Config, {}),
    "qwen3": (transformers.Qwen3Config, dict(head_dim=16)),
    "gemma2": (transformers.Gemma2Config, dict(head_dim=16, final_logit_softcapping=0.5)),
    "granite": (transformers.GraniteConfig, dict(logits_scaling=0.25)),
    "cohere": (transformers.CohereConfig, dict(logit_scale=4.0)),
}


def build(name, seed=0):
    config_class, extra = CONFIGS[name]
    config = config_class(**COMMON, **extra)
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).float()
    with torch.no_grad():  # a head large enough that the logit scale and softcap matter
        model.lm_head.weight.mul_(20.0)
    return model


def batch(seed=0, rows=2, length=12, pad=3):
    """Left-padded token ids, attention mask and labels (-100 on padding and a prompt)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (rows, length), generator=g)
    mask = torch.ones(rows, length, dtype=torch.long)
    mask[0, :pad] = 0
    ids[0, :pad] = 0
    labels = ids.clone()
    labels[mask == 0] = -100
    labels[1, :2] = -100  # a prompt that is not trained on
    return ids, mask, labels


def loss_and_grads(model, **inputs):
    model.zero_grad()
    out = model(**inputs)
    out.loss.backward()
    return out, {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def assert_same_grads(got, want):
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=2e-4, atol=1e-6, msg=name)


@pytest.fixture(scope="module", params=list(CONFIGS))
def pair(request):
    """(stock model, fused copy) with the same weights."""
    stock = build(request.param)
    fused = fuse_loss(copy.deepcopy(stock))
    return stock, fused


def test_head_features_are_on(pair):
    stock, fused = pair
    name = type(stock).__name__
    if name == "Gemma2ForCausalLM":
        assert stock.config.final_logit_softcapping == 0.5
    if name == "GraniteForCausalLM":
        assert stock.config.logits_scaling == 0.25
    if name == "CohereForCausalLM":
        assert stock.logit_scale == 4.0
    if stock.config.tie_word_embeddings:
        assert fused.lm_head.weight is fused.model.embed_tokens.weight


@pytest.mark.parametrize("num_items", [None, 37])
def test_loss_and_every_gradient_equal_the_stock_model(pair, num_items):
    stock, fused = pair
    ids, mask, labels = batch()
    extra = {} if num_items is None else {"num_items_in_batch": torch.tensor(num_items)}
    want, want_grads = loss_and_grads(stock, input_ids=ids, attention_mask=mask, labels=labels,
                                      **extra)
    got, got_grads = loss_and_grads(fused, input_ids=ids, attention_mask=mask, labels=labels,
                                    **extra)
    assert got.logits is None  # never materialised
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-6)
    assert_same_grads(got_grads, want_grads)


def test_accumulated_micro_batches_equal_one_batch(pair):
    stock, fused = pair
    ids, mask, labels = batch(seed=1, rows=4)
    _, want = loss_and_grads(stock, input_ids=ids, attention_mask=mask, labels=labels)
    # transformers' Trainer: each micro-batch's summed loss over the whole step's token count
    items = torch.tensor(int((labels[:, 1:] != -100).sum()))
    fused.zero_grad()
    for part in (slice(0, 2), slice(2, 4)):
        out = fused(input_ids=ids[part], attention_mask=mask[part], labels=labels[part],
                    num_items_in_batch=items)
        out.loss.backward()
    assert_same_grads({n: p.grad for n, p in fused.named_parameters()}, want)


def test_forward_without_labels_and_generate_are_unchanged(pair):
    stock, fused = pair
    ids, mask, _ = batch(seed=2)
    with torch.no_grad():
        assert torch.equal(fused(input_ids=ids, attention_mask=mask).logits,
                           stock(input_ids=ids, attention_mask=mask).logits)
    settings = dict(attention_mask=mask, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(fused.generate(ids, **settings), stock.generate(ids, **settings))


def test_tuple_output_and_positional_arguments():
    stock = build("llama")
    fused = fuse_loss(copy.deepcopy(stock))
    ids, mask, labels = batch()
    loss, *rest = fused(ids, mask, labels=labels, return_dict=False)
    torch.testing.assert_close(loss, stock(ids, mask, labels=labels).loss, rtol=1e-5, atol=1e-6)
    assert not any(torch.is_tensor(r) and r.shape[-1] == VOCAB for r in rest)


def test_shift_labels_and_ignore_index_are_honoured():
    stock = build("llama")
    fused = fuse_loss(copy.deepcopy(stock))
    ids, mask, labels = batch()
    shift = torch.nn.functional.pad(labels.clamp(min=5), (0, 1), value=5)[:, 1:].contiguous()
    for extra in (dict(shift_labels=shift), dict(ignore_index=5)):
        want = stock(input_ids=ids, attention_mask=mask, labels=labels.clamp(min=5), **extra)
        got = fused(input_ids=ids, attention_mask=mask, labels=labels.clamp(min=5), **extra)
        torch.testing.assert_close(got.loss, want.loss, rtol=1e-5, atol=1e-6)


def test_fusing_twice_changes_nothing():
    model = fuse_loss(build("llama"))
    forward = model.forward
    assert fuse_loss(model) is model and model.forward is forward


def test_a_deep_copy_runs_its_own_weights():
    stock = build("llama")
    fused = fuse_loss(copy.deepcopy(stock))
    twin = copy.deepcopy(fused)  # e.g. TRL's reference model
    with torch.no_grad():
        twin.lm_head.weight.mul_(0.5)
        stock.lm_head.weight.mul_(0.5)
    ids, mask, labels = batch()
    got = twin(input_ids=ids, attention_mask=mask, labels=labels)
    assert got.logits is None
    torch.testing.assert_close(got.loss, stock(input_ids=ids, attention_mask=mask, labels=labels).loss,
                               rtol=1e-5, atol=1e-6)


def test_the_signature_still_takes_loss_kwargs():
    # transformers' Trainer passes num_items_in_batch only to a forward with **kwargs
    parameters = inspect.signature(fuse_loss(build("llama")).forward).parameters
    assert "labels" in parameters
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def test_unsupported_model_raises_naming_its_class():
    config = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=1, n_head=2)
    with pytest.raises(TypeError, match="GPT2LMHeadModel"):
        fuse_loss(transformers.GPT2LMHeadModel(config))


def test_a_custom_loss_function_raises():
    model = build("llama")
    model.loss_function = lambda logits, labels, vocab_size, **kwargs: logits.sum()
    with pytest.raises(ValueError, match="loss_function"):
        fuse_loss(model)


@pytest.mark.slow
def test_example_curves_agree_and_the_fused_step_saves_the_logits():
    script = Path(__file__).resolve().parent.parent / "examples" / "hf_causal_lm.py"
    out = subprocess.run([sys.executable, str(script), "--steps", "4", "--memory-vocab", "32000",
                          "--memory-batch", "2", "--memory-length", "256"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    curves = re.findall(r"step +\d+  loss (\d+\.\d+)  loss (\d+\.\d+)", out.stdout)
    assert len(curves) == 4
    for stock, fused in curves:
        assert float(fused) == pytest.approx(float(stock), abs=1e-4)
    peaks = dict(re.findall(r"(stock|fused) peak +(\d+\.\d+) MiB", out.stdout))
    logits_mib = 2 * 256 * 32000 * 4 / 2**20
    assert float(peaks["stock"]) - float(peaks["fused"]) >= logits_mib


def test_bfloat16_model_gets_a_float32_loss_and_bfloat16_gradients():
    stock = build("llama").to(torch.bfloat16)
    fused = fuse_loss(copy.deepcopy(stock))
    ids, mask, labels = batch()
    want, want_grads = loss_and_grads(stock, input_ids=ids, attention_mask=mask, labels=labels)
    got, got_grads = loss_and_grads(fused, input_ids=ids, attention_mask=mask, labels=labels)
    assert got.loss.dtype == want.loss.dtype == torch.float32
    # the stock logits are rounded to bfloat16 (8 bits) before the loss; the fused ones are not
    torch.testing.assert_close(got.loss, want.loss, rtol=1e-2, atol=0)
    assert got_grads["lm_head.weight"].dtype == torch.bfloat16
    torch.testing.assert_close(got_grads["lm_head.weight"].float(),
                               want_grads["lm_head.weight"].float(), rtol=0.1, atol=1e-3)
