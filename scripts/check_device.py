"""The engine on an accelerator: every method gives there what it gives on the CPU.

The test suite proves the engine right on the CPU (against an independent
reference, tests/test_reference.py) but CI has no GPU, and the engine takes
other kernels on CUDA (flash / memory-efficient attention with the
log-sum-exp for the deferred received mass, half-precision matmuls with
float32 output). This script runs the same random models and inputs on the
CPU and on ``--device`` and compares, in float32 with TF32 off:

1. a random Qwen2 decoder (speech-LLM prompt, ``inputs_embeds``) for every
   method, batch 1 and a left-padded batch of 3 (unequal lengths, so masked
   attention at reducing layers), ``keep`` and ``paper`` positions: tokens
   entering each layer, every layer's hidden states, the KV-cache lengths,
   greedy and beam-3 generations;
2. a random Whisper encoder (real length, 1500 positions; tiny width) for
   every encoder method, batch 2: tokens kept and the encoder output;
3. the deferred received mass in bfloat16 on the device against the exact
   float32 mass (what the half-precision path gives up);
4. on CUDA, kernel times at Qwen-7B's attention shape (32 heads of 128,
   bfloat16): SDPA vs the attention + deferred mass that weighted merges run
   (torch, and the fused Triton kernel where Triton is installed) vs the
   chunked exact probe.

The device side can take the other paths (the CPU side stays eager, torch
mass): ``--mass-kernel triton`` computes the deferred mass with the fused
kernel (engine/mass_kernel.py), ``--compile`` runs the decoder's prefill
through ``model.compile=true``'s compiled forward (recorded as skipped, with
the reason, where this checkout lacks it). Every row is written to ``--json``
as soon as it is known, so a run stopped by a time limit keeps what it found.

A flipped selection (two candidates whose scores differ by less than the
devices' rounding) shows up as a token-set mismatch and is reported as such.
Exit status 1 when any comparison fails. Usage:
    python scripts/check_device.py --device cuda --json check.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
import traceback
from typing import Callable

import torch

from fastadasp.run.benchmarking import (
    QWEN_7B,
    cache_bytes,
    compiled_forward,
    device_name,
    llm_prompts,
    llm_reducer,
    markdown_table,
    micro_ms,
    random_qwen2_lm,
    write_json,
)
from fastadasp.engine import Budget, TokenReducer
from fastadasp.engine.attention import attention_with_lse, attention_with_received
from fastadasp.engine.mass_kernel import triton_unavailable
from fastadasp.models.speech_lm import decoder_stack_spec
from fastadasp.models.whisper import WHISPER_ENCODER_LAYOUT, encode_whisper, whisper_stack_spec
from fastadasp.reduction import ATome, FastAdaSPDense, FastAdaSPSparse, FastV, H2O, RandomEvict, RandomMerge

#: relative to the tensor's scale (max |x|): float32 on two devices, different kernels
REL_TOL = 1e-4
METHODS: dict[str, Callable[[], object]] = {
    "dense_constant": lambda: FastAdaSPDense("constant"),
    "dense_decay": lambda: FastAdaSPDense("decay"),
    "dense_unweighted": lambda: FastAdaSPDense("constant", weighted=False),
    "sparse": lambda: FastAdaSPSparse(layer=1),
    "atome_capped": lambda: ATome(),
    "atome_uncapped": lambda: ATome(cap_to_budget=False),
    "fastv": lambda: FastV(layer=1),
    "random_merge": lambda: RandomMerge(layer=1, seed=3),
    "random_evict": lambda: RandomEvict(layer=2, seed=3),
    "h2o": lambda: H2O(),
}
PAPER_POSITIONS = ("dense_constant", "sparse", "fastv")


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float().cpu(), b.float().cpu()
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


# -- 1. decoder ---------------------------------------------------------------------------
def llm_inputs(model, batch: int):
    embeds, mask, segments = llm_prompts(model, batch, 120, 40, seed=11)
    for row, pad in zip(range(1, batch), (17, 33)):  # left padding of unequal width
        mask[row, :pad] = 0
        segments[row, :pad] = -1
    return embeds, mask, segments


@torch.inference_mode()
def llm_run(model, method_name: str, batch: int, positions: str, mass_kernel: str = "torch",
            forward: Callable | None = None) -> dict:
    """Prefill (through ``forward``, default the model itself), greedy and beam-3 generations."""
    spec = decoder_stack_spec(model.config)
    embeds, mask, segments = llm_inputs(model, batch)
    out: dict = {}
    for key, beams, new in (("prefill", None, 0), ("greedy", 1, 5), ("beam3", 3, 5)):
        reducer = llm_reducer(model, spec, METHODS[method_name](), 0.3, profile=False, positions=positions,
                              mass_kernel=mass_kernel)
        with reducer, reducer.forward_state(segments, mask) as state:
            if beams is None:
                res = (forward or model)(inputs_embeds=embeds, attention_mask=mask, use_cache=True,
                                         output_hidden_states=True)
                out["hidden"] = [h.float().cpu() for h in res.hidden_states]
                out["logits"] = res.logits[:, -1].float().cpu()
                out["cache_lengths"] = cache_bytes(res.past_key_values)[1]
                out["tokens"] = [t.cpu() for t in state.tokens]
                out["valid"] = [state.valid.cpu()]
            else:
                gen = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=new, min_new_tokens=new,
                                     num_beams=beams, do_sample=False, eos_token_id=None, pad_token_id=0)
                out[key] = gen.cpu()
    return out


def compare_llm(cpu: dict, dev: dict) -> tuple[bool, str]:
    if [t.tolist() for t in cpu["tokens"]] != [t.tolist() for t in dev["tokens"]]:
        return False, "tokens per layer differ"
    if not torch.equal(cpu["valid"][0], dev["valid"][0]) or cpu["cache_lengths"] != dev["cache_lengths"]:
        return False, "kept token set or cache lengths differ (a flipped selection?)"
    worst = max(rel_diff(a, b) for a, b in zip(cpu["hidden"], dev["hidden"]))
    worst = max(worst, rel_diff(cpu["logits"], dev["logits"]))
    if worst > REL_TOL:
        return False, f"hidden states differ by {worst:.2e} (relative)"
    for key in ("greedy", "beam3"):
        if not torch.equal(cpu[key], dev[key]):
            return False, f"{key} generations differ"
    return True, f"max rel diff {worst:.1e}"


# -- 2. Whisper encoder -------------------------------------------------------------------------
def random_whisper(device):
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=51864, num_mel_bins=80, d_model=64, encoder_layers=4, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=64)
    config._attn_implementation = "sdpa"
    return WhisperForConditionalGeneration(config).eval().to(device)


@torch.inference_mode()
def whisper_run(model, method_name: str, mass_kernel: str = "torch") -> dict:
    g = torch.Generator().manual_seed(5)
    feats = 4 * torch.randn(2, 80, 3000, generator=g)
    feats[1, :, 1800:] = -0.7  # a silent tail
    reducer = TokenReducer(model.model.encoder.layers, WHISPER_ENCODER_LAYOUT, METHODS[method_name](),
                           whisper_stack_spec(model.config), Budget(0.25),  # random_evict at layer 2 of 4 reaches 0.27
                           mass_kernel=mass_kernel)
    with reducer:
        final, valid, realised, tokens = encode_whisper(model, feats.to(model.device), reducer, ["a", "b"])
    return {"final": final.float().cpu(), "valid": valid.cpu(), "tokens": tokens}


def compare_whisper(cpu: dict, dev: dict) -> tuple[bool, str]:
    if cpu["tokens"] != dev["tokens"] or not torch.equal(cpu["valid"], dev["valid"]):
        return False, "tokens kept differ"
    worst = rel_diff(cpu["final"], dev["final"])
    return worst <= REL_TOL, f"max rel diff {worst:.1e}"


# -- 3, 4. the deferred mass in half precision, kernel times --------------------------------------
def attention_inputs(device, dtype, heads: int, t: int, hd: int = 128, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(1, heads, t, hd, generator=g).to(device, dtype) for _ in range(3))
    return q, k, v


def half_mass_error(device, mass_kernel: str = "torch") -> tuple[bool, str]:
    q, k, v = attention_inputs(device, torch.bfloat16, 8, 1024)
    scale = q.shape[-1] ** -0.5
    _, deferred = attention_with_lse(q, k, v, None, scale, True)
    deferred.kernel = mass_kernel
    g = torch.Generator().manual_seed(1)
    columns = torch.randperm(1024, generator=g)[:400].sort().values[None].to(device)
    mass = deferred.at(columns).float().cpu()
    _, exact = attention_with_received(q.float(), k.float(), v.float(), None, scale, True)
    exact = exact.cpu().gather(1, columns.cpu())
    rel = float(((mass - exact).abs() / exact).max())
    return rel < 1e-2, f"max rel error {rel:.1e}"


def kernel_times(device, t: int) -> dict:
    q, k, v = attention_inputs(device, torch.bfloat16, QWEN_7B["heads"], t)
    scale = q.shape[-1] ** -0.5
    cols = torch.arange(0, t, 2, device=device)[None]  # half the keys grouped

    def sdpa():
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)

    def deferred():
        _, d = attention_with_lse(q, k, v, None, scale, True)
        return d.at(cols)

    def fused():
        _, d = attention_with_lse(q, k, v, None, scale, True)
        d.kernel = "triton"
        return d.at(cols)

    def chunked():
        return attention_with_received(q, k, v, None, scale, True)

    row = {"tokens": t, "sdpa_ms": micro_ms(sdpa), "lse_and_deferred_mass_ms": micro_ms(deferred),
           "chunked_probe_ms": micro_ms(chunked)}
    if triton_unavailable(device) is None:
        row["lse_and_triton_mass_ms"] = micro_ms(fused)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", default=None)
    p.add_argument("--kernel-tokens", type=int, nargs="*", default=[3000, 12000])
    p.add_argument("--mass-kernel", choices=("torch", "triton"), default="torch",
                   help="the device side's deferred mass (the CPU side: torch) (default: %(default)s)")
    p.add_argument("--compile", action="store_true",
                   help="the device side's decoder prefill through model.compile=true's compiled forward")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="methods to compare (default: all)")
    p.add_argument("--skip", nargs="*", default=[], choices=("decoder", "whisper", "half", "kernels"),
                   help="parts to leave out")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    started = time.perf_counter()
    card = device_name(device)
    print(f"{card} | torch {torch.__version__}")
    rows: list[dict] = []
    path = f"mass {args.mass_kernel}" + (", compiled" if args.compile else "")
    payload: dict = {"device": card, "torch": torch.__version__, "path": {"mass_kernel": args.mass_kernel,
                                                                         "compile": args.compile}, "checks": rows}

    def save() -> None:  # after every row: a run stopped by a time limit keeps what it found
        if args.json:
            write_json(args.json, payload | {"wall_s": time.perf_counter() - started})

    def check(part: str, case: str, run: Callable[[], tuple[bool | None, str]]) -> None:
        try:
            ok, detail = run()
        except Exception:  # a crash on the device is this check's finding: record it, go on
            ok, detail = False, "crashed: " + traceback.format_exc(limit=-3).strip().replace("\n", " | ")
        rows.append({"part": part, "case": f"{case} [{path}]", "ok": ok, "detail": detail})
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[ok]
        print(f"{mark} {part} {case} [{path}]: {detail}", flush=True)
        save()

    if args.mass_kernel == "triton" and triton_unavailable(device):
        check("mass kernel", "available", lambda: (None, triton_unavailable(device)))
        args.skip = [*args.skip, "decoder", "whisper", "half"]
    forward = None
    cpu_model = random_qwen2_lm(128, 4, seed=0, vocab=512)
    models = {"cpu": cpu_model, device: copy.deepcopy(cpu_model).to(device)}  # the same weights on both
    if args.compile:
        forward, why_not = compiled_forward(models[device])
        if forward is None:
            check("compiled", "available", lambda: (None, why_not))
            args.skip = [*args.skip, "decoder"]
        args.skip = [*args.skip, "whisper"]  # the compiled path is the decoder's prefill
    kernel = {"cpu": "torch", device: args.mass_kernel}
    run_forward = {"cpu": None, device: forward}
    for name in args.methods if "decoder" not in args.skip else ():
        for batch in (1, 3):
            for positions in ("keep", "paper") if name in PAPER_POSITIONS else ("keep",):
                check("decoder", f"{name} batch {batch} {positions}",
                      lambda: compare_llm(*(llm_run(models[d], name, batch, positions, kernel[d], run_forward[d])
                                            for d in ("cpu", device))))
    if "whisper" not in args.skip:
        whispers = {d: random_whisper(d) for d in ("cpu", device)}
        for name in (m for m in args.methods if m != "h2o"):
            check("whisper", name, lambda: compare_whisper(*(whisper_run(whispers[d], name, kernel[d])
                                                             for d in ("cpu", device))))
    if device.type == "cuda" and "half" not in args.skip:
        check("half mass", "bf16 deferred vs float32 exact", lambda: half_mass_error(device, args.mass_kernel))
    if device.type == "cuda" and "kernels" not in args.skip:
        payload["kernels"] = [kernel_times(device, t) for t in args.kernel_tokens]
        save()
        print(f"\nOne causal attention layer at Qwen-7B's shape (32 heads x 128, bfloat16), ms [{card}]:\n")
        print(markdown_table(payload["kernels"], {"tokens": "tokens", "sdpa_ms": "SDPA",
                                                  "lse_and_deferred_mass_ms": "attention + deferred mass (half the keys)",
                                                  "lse_and_triton_mass_ms": "attention + fused Triton mass",
                                                  "chunked_probe_ms": "chunked exact probe"}, ".3g"))
    failed = [r for r in rows if r["ok"] is False]
    skipped = [r for r in rows if r["ok"] is None]
    payload["wall_s"] = time.perf_counter() - started
    print(f"\n{len(rows) - len(failed) - len(skipped)}/{len(rows)} checks passed, {len(skipped)} skipped on {card} "
          f"({payload['wall_s']:.0f} s)")
    save()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
