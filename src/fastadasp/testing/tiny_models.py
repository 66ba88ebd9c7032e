"""Tiny random speech LMs, built offline, for tests and offline defaults.

Each builder writes a Hugging Face folder (model, processor, tokenizer, generation
config) that loads back through the same ``from_pretrained`` path as the real
checkpoint of its family. The weights are random (seeded) and the tokenizer is a
byte-level BPE trained here on a small built-in English corpus, so nothing is
downloaded. Their outputs are never results: they exist to exercise code paths.

Families:

* ``qwen2_audio``: :class:`~transformers.Qwen2AudioForConditionalGeneration`
  (Whisper-style encoder + Qwen2 decoder), processor
  :class:`~transformers.Qwen2AudioProcessor`, placeholder ``<|AUDIO|>``.
* ``audioflamingo3``: :class:`~transformers.AudioFlamingo3ForConditionalGeneration`
  (Whisper-style encoder + MLP projector + Qwen2 decoder), processor
  :class:`~transformers.AudioFlamingo3Processor`, placeholder ``<sound>``.

Both decoders are the same standard pre-norm Qwen2 stack, reached as
``model.model.language_model.layers`` (see ``FAMILY_PATHS``). One table (``_FAMILIES``)
says what differs between the families; one writer builds either.

A folder counts as complete when every file in ``_REQUIRED_FILES`` is there and
its stamp file matches ``TINY_VERSION``, the family and the seed; builders are
idempotent and build into a temporary sibling that is renamed into place, so a
half-written folder is never taken for a complete one.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
from pathlib import Path
from dataclasses import dataclass, field
from functools import partial
from typing import Callable

__all__ = [
    "TINY_VERSION",
    "TINY_FAMILIES",
    "FAMILY_PATHS",
    "build_tiny_qwen2_audio",
    "build_tiny_audioflamingo3",
    "build_tiny",
    "tiny_model_dir",
    "default_tiny_root",
    "is_complete",
    "tiny_corpus",
    "train_tiny_tokenizer",
]

#: bump when anything that changes the built files changes (config, corpus, tokenizer, init)
TINY_VERSION = "1"
STAMP_FILE = "fastadasp_tiny.json"
_REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
)

#: std of the random init. The default 0.02 gives a tiny model whose residual
#: stream barely notices its inputs; 0.2 makes the audio move the logits a lot.
INIT_STD = 0.2
TOKENIZER_VOCAB = 1000  # BPE trainer target (bytes + specials + merges)

# ---------------------------------------------------------------------------
# Corpus and tokenizer
# ---------------------------------------------------------------------------

_SENTENCES = """\
Transcribe the input speech.
Transcribe the audio into English text.
Detect the language and recognize the speech.
What is the speaker saying?
Please listen to the audio and write down every word.
Describe the sound in the recording.
Summarize what you hear in one sentence.
Is the speaker a man or a woman?
How many people are talking in this clip?
What is the emotion of the speaker?
You are a helpful assistant.
The quick brown fox jumps over the lazy dog.
She sells sea shells by the sea shore.
It was the best of times, it was the worst of times.
Call me when you get home, and do not forget the keys.
The meeting starts at nine o'clock tomorrow morning.
We need to finish the report before Friday.
He walked slowly down the long and narrow street.
The children were playing in the garden after school.
I would like a cup of coffee with milk, please.
The train to London leaves from platform number four.
Can you tell me the way to the nearest station?
The weather today is cold and windy, with some rain.
Our team won the game by three points last night.
The doctor said that I should rest for a few days.
There are twelve months in a year and seven days in a week.
Please turn off the lights when you leave the room.
My brother works as an engineer in a large company.
The book on the table belongs to my sister.
They moved to a small town near the mountains.
Reading is one of the best ways to learn new words.
The price of the ticket is twenty five dollars.
After dinner we went for a walk along the river.
The museum is open every day except Monday.
I have never seen such a beautiful sunset before.
Could you please repeat the question more slowly?
The company announced its results for the third quarter.
Water boils at one hundred degrees at sea level.
The old man told us a story about the war.
We heard the sound of a dog barking in the distance.
A loud bell rang and everyone left the building.
The music was playing softly in the background.
She opened the window to let some fresh air in.
The phone rang twice and then stopped.
Thank you very much for your help yesterday.
Good morning, how are you doing today?
I am fine, thank you, and how are you?
Let me know if you have any questions.
The answer is yes, but only if you agree.
No, I don't think that is a good idea.
He said, "I will be there in ten minutes."
The recording contains speech, music and some noise.
Speech recognition converts spoken words into written text.
A language model predicts the next word in a sentence.
The audio encoder turns sound into a sequence of vectors.
Token reduction makes inference faster and cheaper.
"""

_SUBJECTS = ["the man", "the woman", "my friend", "the teacher", "a young girl", "an old farmer",
             "the driver", "our neighbour", "the student", "the captain", "my mother", "the speaker"]
_VERBS = ["said", "thought", "explained", "remembered", "asked", "noticed", "believed", "wrote"]
_CLAUSES = ["the river was higher than usual", "the shop had closed early", "the letter never arrived",
            "the plan would work", "the road was covered in snow", "the answer was on the last page",
            "the bus was late again", "the house needed a new roof", "the song sounded familiar",
            "the garden looked lovely in spring", "the price had gone up", "the lesson was over"]
_TIMES = ["yesterday", "this morning", "last week", "on Sunday", "at noon", "in the evening", "today",
          "two years ago", "after lunch", "before the storm"]
_NUMBERS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
            "twelve", "twenty", "thirty", "forty", "fifty", "hundred", "thousand"]


def tiny_corpus(n_generated: int = 360) -> list[str]:
    """The fixed built-in corpus: hand-written lines plus deterministic templated ones."""
    lines = [s for s in _SENTENCES.splitlines() if s.strip()]
    rng = random.Random(1234)
    for i in range(n_generated):
        kind = i % 4
        if kind == 0:
            s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} that {rng.choice(_CLAUSES)} {rng.choice(_TIMES)}."
        elif kind == 1:
            s = (f"{rng.choice(_TIMES).capitalize()}, {rng.choice(_SUBJECTS)} bought "
                 f"{rng.choice(_NUMBERS)} apples and {rng.choice(_NUMBERS)} oranges.")
        elif kind == 2:
            s = f"Room {rng.randint(1, 999)}, floor {rng.randint(1, 30)}: {rng.choice(_CLAUSES)}!"
        else:
            s = f"Why do you think {rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} that {rng.choice(_CLAUSES)}?"
        lines.append(s[0].upper() + s[1:])
    # chat-style framing so the template pieces get merges of their own
    lines += [f"<|im_start|>user\n{lines[i]}<|im_end|>\n<|im_start|>assistant\n{lines[i + 1]}<|im_end|>"
              for i in range(0, 40, 2)]
    return lines


def train_tiny_tokenizer(special_tokens: list[str], vocab_size: int = TOKENIZER_VOCAB):
    """A byte-level BPE trained on :func:`tiny_corpus`, returned as a ``Qwen2Tokenizer``.

    The pre-tokenizer, normalizer and decoder are Qwen2's, so it behaves like the
    real checkpoints' tokenizers (only the merges differ). ``special_tokens[0]`` is
    the end-of-text / pad / unk token; all specials are added as special tokens and
    get the first ids, in order.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import AddedToken, Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(tiny_corpus(), trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    eot = special_tokens[0]
    tok = Qwen2Tokenizer(vocab=state["vocab"], merges=merges, unk_token=eot, eos_token=eot, pad_token=eot)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in special_tokens], special_tokens=True)
    for t in special_tokens:  # specials keep the ids the trainer gave them
        assert tok.convert_tokens_to_ids(t) == state["vocab"][t], t
    return tok


def _round_up(n: int, m: int = 64) -> int:
    return (n + m - 1) // m * m


# ---------------------------------------------------------------------------
# Shared pieces
# ---------------------------------------------------------------------------

_TEXT_KW = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=8192,
    initializer_range=INIT_STD,
    tie_word_embeddings=False,
    rms_norm_eps=1e-6,
)
_ENCODER_KW = dict(  # Whisper-style: real conv/positions length (3000 mel frames -> 1500 -> pool 750)
    num_mel_bins=128,
    encoder_layers=2,
    d_model=64,
    encoder_attention_heads=4,
    encoder_ffn_dim=128,
    max_source_positions=1500,
    initializer_range=INIT_STD,
)


def default_tiny_root() -> Path:
    """``$FASTADASP_CACHE/tiny`` (default ``~/.cache/fastadasp/tiny``)."""
    return Path(os.environ.get("FASTADASP_CACHE", Path.home() / ".cache" / "fastadasp")).expanduser() / "tiny"


def _stamp(family: str, seed: int, sizes: dict | None = None) -> dict:
    stamp = {"version": TINY_VERSION, "family": family, "seed": int(seed)}
    return stamp | {"sizes": sizes} if sizes else stamp


def is_complete(folder: str | os.PathLike[str], family: str, seed: int = 0, sizes: dict | None = None) -> bool:
    """True when ``folder`` holds a finished build of this family, version and seed."""
    folder = Path(folder)
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stamp == _stamp(family, seed, sizes) and all((folder / f).is_file() for f in _REQUIRED_FILES)


def _build_atomically(
    out_dir, family: str, seed: int, write: Callable[[Path], None], force: bool = False, sizes: dict | None = None
) -> Path:
    out = Path(out_dir).expanduser()
    if not force and is_complete(out, family, seed, sizes):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        write(tmp)
        (tmp / STAMP_FILE).write_text(json.dumps(_stamp(family, seed, sizes), indent=2) + "\n")
        if not force and is_complete(out, family, seed, sizes):  # someone else finished first
            return out
        if out.exists():  # stale or incomplete: replace it
            shutil.rmtree(out)
        try:
            os.rename(tmp, out)
        except OSError:
            if not is_complete(out, family, seed, sizes):  # lost a race to a broken writer
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _save_model(model, folder: Path) -> None:
    model.eval()
    model.save_pretrained(folder)


# ---------------------------------------------------------------------------
# The families: one table, one writer
# ---------------------------------------------------------------------------

#: ChatML with the audio placed first in the user turn and a default system prompt,
#: matching the rendering of the real nvidia/audio-flamingo-3-hf template.
AUDIOFLAMINGO3_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}"
    "{{ message['content'] }}"
    "{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}<sound>{% endif %}"
    "{% endfor %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}"
    "{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class _Family:
    """What differs between the tiny families (transformers class names)."""

    specials: tuple[str, ...]  # specials[0] is end-of-text / pad
    audio_token: str
    config: str
    encoder_config: str
    model: str
    processor: str
    audio_token_kw: str  # the config argument naming the placeholder id
    text_overrides: dict = field(default_factory=dict)
    chat_template: str | None = None  # None: the processor's built-in default


_FAMILIES = {
    "qwen2_audio": _Family(
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|AUDIO|>", "<|audio_bos|>", "<|audio_eos|>"),
        audio_token="<|AUDIO|>",
        config="Qwen2AudioConfig",
        encoder_config="Qwen2AudioEncoderConfig",
        model="Qwen2AudioForConditionalGeneration",
        processor="Qwen2AudioProcessor",
        audio_token_kw="audio_token_index",  # exposed as config.audio_token_id through attribute_map
    ),
    "audioflamingo3": _Family(
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<sound>"),
        audio_token="<sound>",
        config="AudioFlamingo3Config",
        encoder_config="AudioFlamingo3EncoderConfig",
        model="AudioFlamingo3ForConditionalGeneration",
        processor="AudioFlamingo3Processor",
        audio_token_kw="audio_token_id",
        text_overrides={"max_position_embeddings": 32768},  # up to 20 x 750 audio tokens (10 min)
        chat_template=AUDIOFLAMINGO3_CHAT_TEMPLATE,
    ),
}
QWEN2_AUDIO_SPECIALS = list(_FAMILIES["qwen2_audio"].specials)
AUDIOFLAMINGO3_SPECIALS = list(_FAMILIES["audioflamingo3"].specials)

#: where each family keeps the blocks that token reduction acts on (relative to
#: the ``...ForConditionalGeneration`` object); the same for both families
_DECODER_PATHS = {
    "language_model": "model.language_model",  # Qwen2Model, called with inputs_embeds
    "decoder_layers": "model.language_model.layers",  # Qwen2DecoderLayer list
    "rotary_emb": "model.language_model.rotary_emb",
    "final_norm": "model.language_model.norm",
    "embed_tokens": "model.language_model.embed_tokens",
    "lm_head": "lm_head",
    "audio_tower": "model.audio_tower",
    "projector": "model.multi_modal_projector",
}
FAMILY_PATHS = {name: _DECODER_PATHS for name in _FAMILIES}


def _write(folder: Path, name: str, seed: int, sizes: dict | None = None) -> None:
    import torch
    import transformers
    from transformers import GenerationConfig, Qwen2Config, WhisperFeatureExtractor

    fam = _FAMILIES[name]
    tok = train_tiny_tokenizer(list(fam.specials))
    if fam.chat_template:
        tok.chat_template = fam.chat_template
    eot, im_end, audio = (tok.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>", fam.audio_token))
    sizes = sizes or {}
    text_kw = dict(_TEXT_KW, **fam.text_overrides, **sizes.get("text", {}))
    text_config = Qwen2Config(vocab_size=_round_up(len(tok)), pad_token_id=eot, eos_token_id=eot, **text_kw)
    config = getattr(transformers, fam.config)(
        audio_config=getattr(transformers, fam.encoder_config)(**_ENCODER_KW, **sizes.get("encoder", {})).to_dict(),
        text_config=text_config.to_dict(),
        **{fam.audio_token_kw: audio},
    )
    torch.manual_seed(seed)
    model = getattr(transformers, fam.model)(config)
    model.generation_config = GenerationConfig(eos_token_id=[im_end, eot], pad_token_id=eot, do_sample=False)
    _save_model(model, folder)

    fe = WhisperFeatureExtractor(feature_size=128, return_attention_mask=True)
    extra = {"chat_template": fam.chat_template} if fam.chat_template else {}
    getattr(transformers, fam.processor)(feature_extractor=fe, tokenizer=tok, **extra).save_pretrained(folder)


def build_tiny(
    name: str, out_dir: str | os.PathLike[str], seed: int = 0, force: bool = False, sizes: dict | None = None
) -> Path:
    """Build (once; again with ``force``) tiny model ``name`` (a key of
    ``TINY_FAMILIES``) in ``out_dir``; return the folder. ``sizes``
    (``{"text": {...}, "encoder": {...}}`` config overrides) scales the same
    random model up, e.g. to a speed benchmark's shape; it is part of the stamp."""
    if name not in _FAMILIES:
        raise KeyError(f"unknown tiny model {name!r}; known: {sorted(TINY_FAMILIES)}")
    return _build_atomically(out_dir, name, seed, lambda d: _write(d, name, seed, sizes), force, sizes)


build_tiny_qwen2_audio = partial(build_tiny, "qwen2_audio")
build_tiny_audioflamingo3 = partial(build_tiny, "audioflamingo3")
TINY_FAMILIES: dict[str, Callable[..., Path]] = {name: partial(build_tiny, name) for name in _FAMILIES}


def tiny_model_dir(name: str, seed: int = 0, sizes: dict | None = None) -> Path:
    """The default folder of tiny model ``name``, built on first use.

    ``$FASTADASP_CACHE/tiny/<name>`` (default ``~/.cache/fastadasp/tiny/<name>``);
    a non-zero seed gets its own folder ``<name>-seed<seed>``, scaled ``sizes``
    ``<name>-<hash of sizes>``.
    """
    sub = name if seed == 0 else f"{name}-seed{seed}"
    if sizes:
        sub += "-" + hashlib.sha256(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:10]
    return build_tiny(name, default_tiny_root() / sub, seed=seed, sizes=sizes)
