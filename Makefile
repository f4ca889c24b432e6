# Dockyard: `make up` deploys the local stack, `make test` runs every test.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3
VENV := .venv
STACK ?= local
# The stack file setup reads its provision kinds from (setup-ci takes any stack file).
STACK_FILE ?= stacks/Pulumi.$(STACK).yaml
export DOCKYARD_CACHE ?= $(HOME)/.cache/dockyard
# The backend is the one `pulumi` itself would use (PULUMI_BACKEND_URL, else your `pulumi
# login`); with neither, a local file backend with a generated passphrase (pulumi_env.py).
export PULUMI_SKIP_UPDATE_CHECK := 1
export PULUMI_DIY_BACKEND_NO_LEGACY_WARNING := 1

.PHONY: up destroy preview test test-outside-budget mutation bench lint typecheck validate setup setup-ci setup-dev system-deps system-deps-dev venv venv-ci venv-dev clean-venv pulumi-cli test-artifacts

## up: set everything up and deploy the `local` stack (a QEMU VM with two instances)
up: setup
	scripts/pulumi-stack.sh up $(STACK)

## preview / destroy: the same for `pulumi preview` / `pulumi destroy`
preview: setup
	scripts/pulumi-stack.sh preview $(STACK)

destroy: setup
	scripts/pulumi-stack.sh destroy $(STACK)

## test: lint, type-check and run the whole test suite (what CI runs): pytest, the
## acceptance suite included (`ci` on the testbed stack as docs/ci.md's Locally recipe runs it).
# The caches (CLI, VM image, test bed artifacts, DinD image) are built first, as steps.
test: setup-dev lint typecheck pulumi-cli test-artifacts
	time scripts/test.sh

## mutation: mutmut over config/, render/, providers/ and hostops/ against the fast suite
## (docs/testing.md, "Mutation score"); MUTANTS="dockyard_resources.config.networks*" narrows it.
# mutants/ is the copy mutmut tests in: the scripts the tests run call .venv/bin/python.
mutation: setup-dev
	mkdir -p mutants
	ln -sfn ../$(VENV) mutants/$(VENV)
	nice -n 19 $(VENV)/bin/mutmut run $(MUTANTS)
	$(VENV)/bin/mutmut results

## bench: the provisioning benchmark on a QEMU VM (figures, never a pass/fail on time);
## BENCH_ARGS passes options, e.g. BENCH_ARGS="--instances 1,3 --skip-engine"
bench: setup-dev pulumi-cli test-artifacts
	PATH="$$(scripts/pulumi-cli.sh):$$PATH" $(VENV)/bin/python -m tools.bench $(BENCH_ARGS)

## test-artifacts: the VM image, the test bed's Docker/sysbox choice (printed), the stand-ins
## and the Docker-in-Docker test image (all cached outside the repo)
test-artifacts: venv-dev
	$(VENV)/bin/python -m dockyard_resources.vm.image
	$(VENV)/bin/python -m tools.standins >/dev/null
	$(VENV)/bin/python -m tools.testbed >/dev/null
	$(VENV)/bin/python -m tools.testimage.dind_image --quiet >/dev/null

## test-outside-budget: the tests kept out of `make test` for the suite's time budget (marker
## outside_budget, docs/testing.md): the team on S3 (SeaweedFS's build, about 10-30 min cold),
## the plain-Pulumi path, the tunnel under real clients, two stacks on one host, cloud hardening
test-outside-budget: setup-dev pulumi-cli test-artifacts
	scripts/seaweedfs.sh >/dev/null
	.venv/bin/python -m pytest -m outside_budget

## pulumi-cli: find `pulumi` on PATH or build it from Go modules (cached outside the repo)
pulumi-cli:
	scripts/pulumi-cli.sh >/dev/null

lint: venv-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/python -m tools.lint_scripts

typecheck: venv-dev
	$(VENV)/bin/mypy

validate: venv
	for f in stacks/Pulumi.*.yaml; do $(VENV)/bin/python -m dockyard_resources validate "$$f"; done

## setup: what deploying STACK needs (make up): .venv with the runtime dependencies and the
## Debian packages of the stack's provision kinds (none, and no sudo, for remote hosts only);
## setup-ci adds the acceptance suite's tools for the ci command (STACK_FILE=... for any
## file); setup-dev adds what the tests and linters need.
setup: venv system-deps

setup-ci: venv-ci system-deps

setup-dev: venv-dev system-deps-dev

# After the venv: the packages are read from the stack file by Python.
system-deps: venv
	scripts/system-deps.sh deploy "$(STACK_FILE)"

system-deps-dev: venv
	scripts/system-deps.sh test

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

venv-ci: $(VENV)/.installed-ci

$(VENV)/.installed-ci: requirements-ci.txt $(VENV)/.installed
	$(VENV)/bin/pip install -q -r requirements-ci.txt
	touch $@

venv-dev: $(VENV)/.installed-dev

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed-ci
	$(VENV)/bin/pip install -q -r requirements-dev.txt
	touch $@

clean-venv:
	rm -rf $(VENV)
