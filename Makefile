# fer_ros: `make demo` and `make test` set everything up (into .venv/ and the colcon workspace) first.
SHELL := /bin/bash
ENV := . scripts/env.sh &&
PYTEST_ARGS ?=
MINUTES ?= 10

.PHONY: setup test demo bench soak clean help

help:
	@echo "make demo   set up, then replay a real talking-face clip through the shipped model"
	@echo "make test   set up, then run every test"
	@echo "make bench  set up, then measure per-stage and per-backend timings (JSON in bench_out/)"
	@echo "make soak   set up, then feed fer_node a face and malformed messages for MINUTES (10) minutes (JSON in soak_out/)"
	@echo "make setup  only set up (.venv/, build/, install/); idempotent"
	@echo "make clean  remove everything setup made, ROS logs (log/) and the engine cache (.cache/)"

setup:
	@bash scripts/setup.sh

test: setup
	@$(ENV) python -m pytest fer_ros/test $(PYTEST_ARGS)

demo: setup
	@$(ENV) python -m fer_ros.tools.demo --out demo_out

bench: setup
	@$(ENV) python -m fer_ros.tools.bench --out bench_out/bench.json

soak: setup
	@$(ENV) python -m fer_ros.ros.soak --minutes $(MINUTES) --json soak_out/soak.json

clean:
	rm -rf .venv build install log .setup-stamps .cache
