# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean env

env: $(STAMP)

# torch/torchvision first, pinned to the wheels on this machine's disk; deepspeed needs torch at build time.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m pip install -q --no-build-isolation deepspeed
	# pyiqa only for its MUSIQ network (evaluation's imaging quality); its full dependency set would
	# replace headless OpenCV and pull in training stacks we do not use.
	$(PY) -m pip install -q --no-deps pyiqa==0.1.16
	@command -v ffmpeg >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		(apt-get update -qq && apt-get install -y -qq ffmpeg >/dev/null) || \
		echo "ffmpeg binary not found: using the one bundled with imageio-ffmpeg"; }
	touch $(STAMP)

# The whole system on the embedded default: synthetic corpus → curation (local Ray) → tiny model
# trained with DeepSpeed on the CPU → a 360° video generated from a perspective clip.
DEMO := out/demo
demo: $(STAMP)
	$(PY) -m pipeline.synthetic --out $(DEMO)/corpus --seed 0
	$(PY) pipeline/curate.py --config configs/curate/local.yaml --input $(DEMO)/corpus --output $(DEMO)/curate
	$(VENV)/bin/shards stats $(DEMO)/curate/shards
	rm -rf $(DEMO)/train
	$(VENV)/bin/deepspeed --num_gpus 1 model/train.py --config configs/train/tiny.yaml \
		run_dir=$(DEMO)/train shards=[$(DEMO)/curate/shards] val_shards=[$(DEMO)/curate/shards]
	mkdir -p $(DEMO)/generate
	$(PY) -m model.render --input $(DEMO)/corpus/equirect_000.mp4 --output $(DEMO)/generate/input.mp4 \
		--key 0:0,0,0,90 --key 3:40,5,0,90 --size 128x96
	$(PY) -m model.generate --model $(DEMO)/train --input $(DEMO)/generate/input.mp4 --fov 90 \
		--output $(DEMO)/generate --steps 10
	@echo "demo: corpus in $(DEMO)/corpus, curation run in $(DEMO)/curate, trained model in $(DEMO)/train/unet,"
	@echo "      360° video in $(DEMO)/generate/panorama.mp4"

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf out .pytest_cache
