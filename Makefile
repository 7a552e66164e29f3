# Two entry points for a fresh machine: `make chat` and `make test`. Both set everything up first;
# a second run only reinstalls when pyproject.toml changed.
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: chat test setup browser libreoffice
chat: setup
	$(BIN)/rag serve

test: setup browser libreoffice
	$(BIN)/pytest

setup: $(STAMP)

# torch first and pinned: it resolves to the machine's local CPU build; left to the resolver,
# pip would fetch the CUDA wheels (gigabytes).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[test]'
	touch $(STAMP)

# The browser tests drive Debian's Chromium through playwright; `playwright install` cannot work offline.
browser:
	@command -v chromium >/dev/null && fc-list :lang=zh | grep -q . || { apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei; }

# rag ingest reads .doc/.wps through LibreOffice, and the ingest tests make their PDFs with it
# (14 s to install here, from Debian's own mirror).
libreoffice:
	@command -v soffice >/dev/null || { apt-get update -qq && apt-get install -y -qq libreoffice-writer-nogui; }
