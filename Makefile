# The two commands a newcomer needs: `make run` (the whole stack, with demo data) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Tests use their own RabbitMQ virtual host, so a running dev stack never eats their messages.
TEST_BROKER_VHOST ?= crowdfund_test
TEST_ENV := DEBUG=true CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/$(TEST_BROKER_VHOST)

.PHONY: run test lint format migrations-check check-deploy-files bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

.env:
	cp .env.example .env

run: $(BIN)/.installed .env
	$(BIN)/python bin/run-stack

test: $(BIN)/.installed .env
	bin/ensure-test-broker $(TEST_BROKER_VHOST)
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrations-check: $(BIN)/.installed .env
	$(BIN)/python manage.py makemigrations --check --dry-run

# Benchmarks get their own database (crowdfund_bench) and vhost; `make bench BENCH=platform_bench`
# runs one of them.
# docker-compose.yml, the Prometheus alert rules and the Grafana dashboard are valid (no engine
# needed). promtool comes with Debian's prometheus package.
check-deploy-files: $(BIN)/.installed
	SECRET_KEY=x FLOWER_BASIC_AUTH=ops:x METRICS_TOKEN=x GRAFANA_ADMIN_PASSWORD=x \
		$(BIN)/docker-compose --env-file /dev/null -f docker-compose.yml config --quiet
	promtool check rules monitoring/alerts.yml
	$(BIN)/python -c "import json, sys; [json.load(open(f)) for f in sys.argv[1:]]" monitoring/grafana/dashboards/*.json

bench: $(BIN)/.installed .env
	command -v wrk >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null)
	bin/ensure-test-broker crowdfund_bench
	DEBUG=true CELERY_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/crowdfund_bench $(BIN)/python -m bench.run_all $(BENCH)

clean:
	rm -rf $(VENV) var .pytest_cache
