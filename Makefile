# FastAdaSP: `make demo` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
DEMO_DATA := data/demo_asr/manifest.jsonl
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# GPU targets: this checkout's .venv where it exists, else the machine's python3 (a GPU image's CUDA torch,
# plus the wheels `make gpu-wheels` fetched: see docs/PERFORMANCE.md); the package is read from src/
GPU_PY ?= $(if $(wildcard $(PY)),$(PY),python3)
GPU_RUN := PYTHONPATH=src$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PY)
WHEELS := transformers==5.24.0 soundfile==0.14.0 soxr==1.1.0 cffi==2.1.1 pycparser==3.12

.DEFAULT_GOAL := help
.PHONY: help setup system-deps data tiny-models test test-fast demo bench bench-llm bench-long bench-gpu check-device gpu-verify gpu-wheels tables notebook results merge spice clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

system-deps: ## install espeak-ng, sox and a Java runtime (Debian; Java for CIDEr's tokenizer) when missing
	@command -v espeak-ng >/dev/null && command -v sox >/dev/null && command -v java >/dev/null || \
	  ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q espeak-ng sox default-jre-headless)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps -e .
	@touch $@

setup: system-deps $(STAMP) ## create .venv and install pinned dependencies (torch==2.13.0 first)

data: setup ## build the espeak-ng sets into data/ (~25 s, then instant): demo_asr, demo_dense, demo_dense_large (63 clips, 25.6 min), its pink-noise copy, demo_multilingual (de/es/fr/it/pt), demo_lid
	$(PY) scripts/build_demo_set.py --set all --data-root data

test: data ## run the test suite (real-model tests included)
	$(PY) -m pytest -q

test-fast: setup ## tests without the real Whisper tiny.en model
	$(PY) -m pytest -q -m "not real_model"

demo: data ## full tokens vs FastAdaSP and baselines on 20 dense clips, WER intervals and paired differences (~2 min)
	$(PY) scripts/demo.py

bench: data ## Whisper tiny.en and base encoder speed: full vs flops=0.5, side by side
	$(PY) scripts/benchmark_whisper.py

bench-llm: setup ## speech-LLM prefill/decode/batch/KV benchmark on a Qwen2-Audio-shaped random LLM (~10 min)
	$(PY) scripts/benchmark_speech_lm.py --decode-method weighted

bench-long: setup ## long-audio RTF/prefill/decode/KV/memory grid, talk Table 12 layout (~4 min on CPU)
	$(PY) scripts/benchmark_long_audio.py

bench-gpu: ## on a CUDA machine: Qwen-7B-shaped bf16 prefill (3000/12000 tokens; torch and Triton mass), beam-5 decode (120/240 s, vs its memory ideal), batch 8
	$(GPU_RUN) scripts/benchmark_speech_lm.py --preset qwen-7b --device cuda --dtype bfloat16 --audio-tokens 3000 12000 \
	  --prefill-variants 0 1 2 --mass-kernel torch triton --repeats 5 --max-repeats 9 --decode-audio-tokens 3000 6000 \
	  --new-tokens 64 --decode-repeats 3 --batch-audio-tokens 3000 --batch-size 8 --batch-new-tokens 32 --op-profile \
	  --json results/benchmarks/gpu/qwen7b_bf16.json

check-device: ## on a CUDA machine: every method gives on the GPU what it gives on the CPU (~1 min)
	$(GPU_RUN) scripts/check_device.py --device cuda --json results/benchmarks/gpu/check_device.json

gpu-verify: ## on one H100/H200, < 8 min: check_device (eager, Triton mass, compiled), 7B prefill 3000/12000 (eager, compiled, kernel), op profile -> results/benchmarks/gpu/verify_<card>.json
	$(GPU_RUN) scripts/gpu_verify.py --device cuda

gpu-wheels: ## download into .whl/ the wheels a GPU image (Python 3.12) lacks, to carry there with the checkout
	$(PIP) download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
	  --platform manylinux2014_x86_64 -d .whl $(WHEELS)

tiny-models: setup ## build the tiny random Qwen2-Audio and Audio Flamingo 3 (tests build them on demand)
	$(PY) scripts/build_tiny_models.py

tables: setup ## tables (Markdown + LaTeX) and plots from every metrics.json under results/ and RUNS="dir ..."; WANDB=1 logs them to W&B (offline)
	$(PY) scripts/make_tables.py $(RUNS) --results results --out results $(if $(WANDB),--wandb)

notebook: setup ## run notebooks/analysis.py on results/ into notebooks/analysis.ipynb (git-ignored)
	$(PY) -c "import jupytext, nbclient; nb = jupytext.read('notebooks/analysis.py'); nbclient.NotebookClient(nb, kernel_name='python3', resources={'metadata': {'path': 'notebooks'}}).execute(); jupytext.write(nb, 'notebooks/analysis.ipynb')"

results: data ## regenerate (or resume) every shipped sweep (tiny.en and base, results/README.md) into results/runs (hours on CPU)
	PY=$(PY) bash scripts/reproduce_all.sh

merge: setup ## combine shard folders: make merge SHARDS="dir0 dir1 ..." OUT=dir
	$(PY) -m fastadasp.run.merge $(SHARDS) --out $(OUT)

spice: setup ## install SPICE's Stanford CoreNLP 3.6.0 jars (+ Nashorn/ASM on Java 15+) for caption metrics (needs internet)
	$(PY) scripts/get_spice.py

clean: ## remove run outputs (keeps .venv and data)
	rm -rf outputs multirun .pytest_cache
