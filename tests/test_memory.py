"""The GPU memory estimate (``sblite.train.memory``) against hand computations from published model shapes,
and the recipe comments and ``--dry-run`` that quote it."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sblite.cli import app
from sblite.recipes import load_recipe
from sblite.train.memory import GIB, KNOWN_SHAPES, estimate, shapes_for

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# Qwen2.5-7B / DeepSeek-R1-Distill-Qwen-7B config.json: hidden 3584, intermediate 18944, 28 layers, 28 heads,
# 4 KV heads (head_dim 128), vocab 152064, tie_word_embeddings false, q/k/v biases.
H, FF, L, KV, V = 3584, 18944, 28, 4 * 128, 152064


def _hand_grpo_7b() -> dict[str, float]:
    """grpo-7b by hand: NF4 decoder linears (double-quantised), everything else bf16, untied head."""
    linear = L * (2 * H * H + 2 * H * KV + 3 * H * FF)
    embedding_and_head = 2 * V * H
    norms_and_biases = L * (2 * H + H + 2 * KV) + H
    nf4 = 0.5 + 1 / 64 + 4 / (64 * 256)  # 4 bits + 8-bit absmax per 64 + fp32 per 256 blocks
    weights = linear * nf4 + (embedding_and_head + norms_and_biases) * 2
    lora = L * 32 * (2 * (H + H) + 2 * (H + KV) + 3 * (H + FF))  # r=32 on q,k,v,o,gate,up,down
    kv_round = 6 * (1024 + 3072) * L * 2 * KV * 2  # 6 completions, bf16 K and V
    share = 0.55 * 24 * GIB
    return {
        "params": (linear + embedding_and_head + norms_and_biases) / 1e9,
        "weights": weights / GIB,
        "embedding": embedding_and_head * 2 / GIB,
        "lora": lora * (4 + 4 + 2) / GIB,  # fp32 adapter + fp32 grad + 8-bit Adam's two states
        "kv_round": kv_round / GIB,
        "kv_cache": (share - weights) / GIB,
    }


def test_grpo_7b_matches_the_hand_computation_from_published_shapes():
    est = estimate(load_recipe("grpo-7b"))
    hand = _hand_grpo_7b()
    assert est["params (B)"] == pytest.approx(7.616, abs=1e-3)  # Qwen2.5-7B's published 7.62 B
    assert est["params (B)"] == pytest.approx(hand["params"], abs=1e-3)
    assert est["weights"] == pytest.approx(hand["weights"], abs=0.01)
    assert est["weights"] > 5.0  # the old "4.2 GB" left out the 2.0 GiB 16-bit embedding + LM head
    assert est["of which embedding + LM head"] == pytest.approx(hand["embedding"], abs=0.01)
    assert est["grpo: lora + grads + adamw_8bit"] == pytest.approx(hand["lora"], abs=0.01)
    assert est["grpo: rollout kv cache needed (6 × 4096 tokens)"] == pytest.approx(hand["kv_round"], abs=0.01)
    assert est["vllm kv cache (share − weights)"] == pytest.approx(hand["kv_cache"], abs=0.01)
    assert est["fits the card"] is True
    assert est["on OOM, first"][0].startswith("model.gpu_memory_utilization")


def test_untied_model_counts_embedding_and_head_tied_counts_one_matrix():
    cfg = load_recipe("grpo-7b")
    untied = KNOWN_SHAPES["deepseek-r1-distill-qwen-7b"]
    tied = dataclasses.replace(untied, tied=True)
    a, b = estimate(cfg, shapes=untied), estimate(cfg, shapes=tied)
    one_matrix = V * H * 2 / GIB  # bf16 even under 4-bit: never quantised
    assert a["of which embedding + LM head"] == pytest.approx(2 * one_matrix, abs=0.01)
    assert b["of which embedding + LM head"] == pytest.approx(one_matrix, abs=0.01)
    assert a["weights"] - b["weights"] == pytest.approx(one_matrix, abs=0.02)
    assert a["params (B)"] - b["params (B)"] == pytest.approx(V * H / 1e9, abs=1e-3)


def test_smollm2_is_tied_and_r1_distill_1_5b_is_not():
    """SmolLM2-135M's published 134.5 M parameters need its tied head; R1-Distill-Qwen-1.5B's 1.78 B an untied one."""
    assert shapes_for("builtin:smollm2-135m").params() == pytest.approx(134.5e6, rel=2e-3)
    assert shapes_for("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B").params() == pytest.approx(
        1.777e9, rel=1e-3
    )


def test_optimizer_and_quantisation_move_the_estimate():
    base = load_recipe("grpo-7b")
    adamw = estimate(load_recipe("grpo-7b", ["grpo.optim=adamw_torch"]))
    bf16 = estimate(load_recipe("grpo-7b", ["model.load_in_4bit=false"]))
    assert adamw["grpo: lora + grads + adamw_torch"] > estimate(base)["grpo: lora + grads + adamw_8bit"]
    assert bf16["weights"] == pytest.approx(_hand_grpo_7b()["params"] * 1e9 * 2 / GIB, abs=0.01)
    assert bf16["vllm kv cache (share − weights)"] < 0  # 15 GiB of bf16 weights overflow a 13.2 GiB share


def test_budget_tag_weight_counts_the_whole_batch_logits_twice():
    """sft.budget_tag_weight takes its loss from the micro-batch's full logits (Unsloth chunks them otherwise)
    and keeps a fp32 log-softmax beside them: batch × max_length × vocab × 4 bytes, twice."""
    plain = load_recipe("sft-7b")
    weighted = load_recipe("sft-7b", ["sft.budget_tag_weight=3"])
    b, n = plain.sft.per_device_train_batch_size, plain.sft.max_length
    grown = estimate(weighted)["sft: activations"] - estimate(plain)["sft: activations"]
    assert plain.model.backend != "hf"  # Unsloth: one sequence's logits without the weight
    assert grown == pytest.approx((2 * b * n - n) * V * 4 / GIB, abs=0.02)


def test_unknown_model_says_so_instead_of_numbers():
    est = estimate(load_recipe("grpo-7b", ["model.name_or_path=someone/unknown-model"]))
    assert "unknown" in est["shapes"] and "weights" not in est


@pytest.mark.parametrize("name", ["grpo-7b", "grpo-1.5b", "sft-7b", "sft-1.5b"])
def test_recipe_comments_quote_the_estimate(name):
    """The header's weights and peaks are the estimator's, to the 0.1 GiB they are written with."""
    header = "".join(
        line[1:]
        for line in (RECIPES / f"{name}.yaml").read_text(encoding="utf-8").splitlines(True)
        if line.startswith("#")
    )
    est = estimate(load_recipe(name))
    weights = re.search(r"weights (\d+\.\d) GiB", header)
    assert weights and float(weights.group(1)) == pytest.approx(est["weights"], abs=0.051)
    peaks = dict(re.findall(r"(sft|grpo) peak (\d+\.\d) GiB", header))
    assert set(peaks) == {s for s in ("sft", "grpo") if f"{s}: peak" in est}
    for stage, value in peaks.items():
        assert float(value) == pytest.approx(est[f"{stage}: peak"], abs=0.051)
    assert "On OOM, turn first:" in " ".join(header.split())


def test_dry_run_prints_the_memory_estimate():
    result = CliRunner().invoke(app, ["train", "--recipe", "grpo-7b", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "memory estimate (GiB):" in result.output
    assert f"'weights': {_hand_grpo_7b()['weights']:.2f}" in result.output
    assert "'grpo: peak':" in result.output
