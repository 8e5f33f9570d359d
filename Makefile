PYTHON ?= python3

.PHONY: install test demo bench

install:  ## install t3al and its test tools (torch from the local wheel cache where pinned)
	$(PYTHON) -m pip install -e '.[test]'

test:  ## the whole test suite; T3AL_SHARED=../shared makes data-dependent tests mandatory
	$(PYTHON) -m pytest -q

bench:  ## benchmarks; each script prints its figures
	$(PYTHON) benchmarks/bench_map.py

demo:  ## the whole pipeline on a generated world with the embedded tiny CoCa (installs t3al first; minutes on a CPU)
	$(PYTHON) -m pip install -q -e .
	$(PYTHON) -m t3al.demo.cli --out demo_out
