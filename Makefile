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

# The whole system on the embedded default: synthetic corpus → curation (local Ray) → the tiny VAE
# fitted on the curated frames → the tiny UNet trained with DeepSpeed on the CPU → evaluation on
# scenes training never saw (trained vs untrained vs a naive baseline) → a 360° video generated
# from a perspective clip of an unseen scene, with a preview a person reads at a glance.
DEMO := out/demo
CLIP := equirect_000_0000_sim0
demo: $(STAMP)
	$(PY) -m pipeline.synthetic --out $(DEMO)/corpus --seed 0
	$(PY) pipeline/curate.py --config configs/curate/local.yaml --input $(DEMO)/corpus --output $(DEMO)/curate
	$(VENV)/bin/shards stats $(DEMO)/curate/shards
	$(PY) -m model.fit_vae --config configs/train/demo.yaml --shards $(DEMO)/curate/shards --out $(DEMO)/svd
	rm -rf $(DEMO)/train
	$(VENV)/bin/deepspeed --num_gpus 1 model/train.py --config configs/train/demo.yaml \
		run_dir=$(DEMO)/train shards=[$(DEMO)/curate/shards] val_shards=[$(DEMO)/curate/shards] \
		model.pretrained=$(DEMO)/svd
	# held-out scenes: another corpus seed, never trained on
	$(PY) -m pipeline.synthetic --out $(DEMO)/heldout --seed 1 --count 4 --size 256x128 --seconds 3
	rm -rf $(DEMO)/heldout/shards $(DEMO)/eval
	$(PY) -m model.demo heldout --corpus $(DEMO)/heldout --out $(DEMO)/heldout/shards
	$(PY) -m model.eval.protocol --shards $(DEMO)/heldout/shards --out $(DEMO)/eval/protocol \
		--config configs/train/demo.yaml --simulated 1
	$(PY) -m model.demo evaluate --config configs/train/demo.yaml --protocol $(DEMO)/eval/protocol \
		--train-shards $(DEMO)/curate/shards --trained $(DEMO)/train --untrained $(DEMO)/svd --out $(DEMO)/eval
	# a 12-frame perspective clip of an unseen scene, with its exact poses and ground truth
	rm -rf $(DEMO)/generate
	$(PY) -m model.eval.protocol --shards $(DEMO)/heldout/shards --out $(DEMO)/generate/clip \
		--config configs/train/demo.yaml --frames 12 --limit 1 --seed 1
	$(PY) -m model.generate --model $(DEMO)/train --input $(DEMO)/generate/clip/input/$(CLIP).mp4 \
		--poses $(DEMO)/generate/clip/input/$(CLIP).json --output $(DEMO)/generate --steps 10 --guidance 1,1
	$(PY) -m model.demo preview --generated $(DEMO)/generate --gt $(DEMO)/generate/clip/gt/$(CLIP).mp4 \
		--out $(DEMO)/generate/demo.png
	@echo "demo: corpus in $(DEMO)/corpus, curation run in $(DEMO)/curate, fitted VAE in $(DEMO)/svd,"
	@echo "      trained model in $(DEMO)/train/unet, evaluation table in $(DEMO)/eval/table.md,"
	@echo "      360° video in $(DEMO)/generate/panorama.mp4, preview in $(DEMO)/generate/demo.png"

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf out .pytest_cache
