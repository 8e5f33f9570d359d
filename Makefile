PYTHON ?= python3
# The torch this project is tested with (what .ci/run installs). It is installed only when no torch
# is importable yet: a torch you installed for your CUDA is kept. Choose another build with
# make TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cu121" demo, or none with TORCH=
TORCH ?= torch==2.14.1 torchvision==0.29.1
HAVE_TORCH := $(shell $(PYTHON) -c "import torch, torchvision" 2>/dev/null && echo yes)
STAMP := .make-installed-$(subst /,_,$(PYTHON))
TEST_STAMP := .make-test-tools-$(subst /,_,$(PYTHON))

.PHONY: install test demo bench

install: $(STAMP)  ## install t3al (editable); torch first where none is installed

$(STAMP): setup.cfg
ifneq ($(HAVE_TORCH),yes)
	$(if $(strip $(TORCH)),$(PYTHON) -m pip install $(TORCH))
endif
	$(PYTHON) -m pip install -e .
	@echo "$(PYTHON)" > $@

# the test extra pins transformers<4.56 (open_clip's own CoCa.generate, the captions' reference):
# only `make test` installs it
$(TEST_STAMP): $(STAMP)
	$(PYTHON) -m pip install -e '.[test]'
	@echo "$(PYTHON)" > $@

test: $(TEST_STAMP)  ## the whole test suite; T3AL_SHARED=../shared makes data-dependent tests mandatory
	$(PYTHON) -m pytest -q

bench: $(TEST_STAMP)  ## benchmarks; each script prints its figures
	$(PYTHON) benchmarks/bench_map.py

demo: $(STAMP)  ## the whole pipeline on a generated world with the embedded tiny CoCa (minutes on a CPU)
	$(PYTHON) -m t3al.demo.cli --out demo_out
