# Two commands: `make run` (serve the hub) and `make test` (the whole suite). Everything installs itself.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
ARGS ?=

.PHONY: run test install install-dev chromium bench toy toy-hair anime-default hair-segmenter

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(PY) app.py $(ARGS)

# The browser test drives Debian's chromium; install it when missing and we may (root).
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing and we are not root: the browser test will be skipped"; fi; \
	fi

test: $(VENV)/.installed-dev chromium
	$(PY) -m pytest -q

bench: $(VENV)/.installed-dev
	$(PY) bench/startup.py
	$(PY) bench/toy_quality.py
	OMP_NUM_THREADS=1 $(PY) bench/generate_overhead.py
	OMP_NUM_THREADS=1 $(PY) bench/anime_speed.py
	$(PY) bench/gpu_anime.py

# Rebuild the embedded toy model (about an hour on 2 CPU cores).
toy: $(VENV)/.installed
	$(PY) -m training.toy --output assets/toy-sd

# Rebuild the tiny profile's hair inpainting base and default hair model (about two hours on 2 CPU cores): a first
# leg of 2 000 UNet steps, then 1 500 more from it (a second one-cycle schedule), the decoder's tuning and stage 2,
# as the shipped one was made.
toy-hair: $(VENV)/.installed
	$(PY) -m training.hair toy --adapter-steps 0 --decoder-steps 0 --output build/toy-hair-first-leg
	$(PY) -m training.hair toy --base-from build/toy-hair-first-leg --unet-steps 1500 --output assets/toy-hair

# Rebuild the tiny profile's default anime model (a few minutes on 2 CPU cores).
anime-default: $(VENV)/.installed
	$(PY) -m training.anime.default

# Rebuild the tiny profile's hair segmenter from toy portraits (a few minutes on 2 CPU cores).
hair-segmenter: $(VENV)/.installed
	$(PY) -m training.hair segmenter --output assets/hair-segmenter-tiny
