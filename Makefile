# Relay — build, run and test.  See README.md.
#
#   make            build build/relay.fcgi and build/relay-admin
#   make run        install what is missing, build, init the store, serve on :9879
#   make test       install what is missing, build, run unit + end-to-end tests
#   make asan       unit tests under AddressSanitizer + UBSan
#   make check      formatting and banned functions

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
RELAY_INI ?= relay.ini
FRONT    ?= caddy

PKGS     := fcgi libcurl libssl libcrypto inih jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC       ?= cc
OPTFLAGS ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wno-format-nonliteral
ifeq ($(CI),true)
WARN     += -Werror
endif
SANITIZE ?=
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPTFLAGS) $(WARN) $(SANITIZE) -I. $(PKG_CFLAGS) -MMD -MP
LDFLAGS  := $(SANITIZE)
LDLIBS   := $(PKG_LIBS) -ldb -lpthread

BASE_SRC   := $(wildcard store/base/*.c)
STORE_SRC  := $(wildcard store/*.c)
ENGINE_SRC := $(wildcard engine/*.c)
FCGI_SRC   := $(wildcard fcgi/*.c)
ADMIN_SRC  := $(wildcard admin/*.c)
UNIT_SRC   := $(wildcard tests/unit/t_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
LIB        := $(BUILD)/librelay.a
LIB_OBJ    := $(call obj,$(ENGINE_SRC) $(STORE_SRC) $(BASE_SRC))
UNIT_BIN   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

.PHONY: all deps deps-test run test test-unit test-e2e asan fuzz bench check install clean

all: $(BUILD)/relay.fcgi $(BUILD)/relay-admin

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/relay.fcgi: $(call obj,$(FCGI_SRC)) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/relay-admin: $(call obj,$(ADMIN_SRC)) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(call obj,tests/unit/%.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@deploy/install-deps.sh

deps-test:
	@deploy/install-deps.sh --test

# Builds after the dependencies are present: pkg-config flags are computed at
# parse time, so the build runs in a fresh make once install-deps is done.
run: deps
	@$(MAKE) --no-print-directory all
	@deploy/run.sh "$(RELAY_INI)" "$(FRONT)"

test: deps-test
	@$(MAKE) --no-print-directory all unit-bins
	@tests/run.sh "$(BUILD)"

test-unit: deps
	@$(MAKE) --no-print-directory unit-bins
	@tests/run.sh "$(BUILD)" unit

test-e2e: deps-test
	@$(MAKE) --no-print-directory all
	@tests/run.sh "$(BUILD)" e2e

unit-bins: $(UNIT_BIN)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
		SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit-bins
	@ASAN_OPTIONS=detect_leaks=1 tests/run.sh build-asan unit

# libFuzzer targets (clang), each run for FUZZ_SECONDS on its seed corpus.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := sse openai providers
FUZZ_SRC := engine/sse.c engine/frame.c engine/prov_common.c engine/prov_openai.c \
	engine/prov_anthropic.c engine/prov_gemini.c engine/prov_ollama.c engine/policy.c \
	store/base/rl_buf.c store/base/rl_err.c
fuzz: deps
	@mkdir -p build-fuzz
	@for t in $(FUZZ_TARGETS); do \
		clang -std=c11 -D_GNU_SOURCE -g -O1 -I. $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined \
			-o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c $(FUZZ_SRC) -ljansson || exit 1; \
		mkdir -p build-fuzz/corpus-$$t && cp tests/fuzz/corpus/$$t/* build-fuzz/corpus-$$t/; \
		echo "fuzz: $$t for $(FUZZ_SECONDS) s"; \
		if ! build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			build-fuzz/corpus-$$t > build-fuzz/fuzz_$$t.log 2>&1; then \
			tail -40 build-fuzz/fuzz_$$t.log; exit 1; fi; \
		tail -1 build-fuzz/fuzz_$$t.log; \
	done

# Benchmarks (not part of make test): numbers, not pass/fail; results in tests/out/.
bench: deps-test
	@$(MAKE) --no-print-directory all
	@tests/bench/run.sh "$(BUILD)"

check:
	@tests/check.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/relay/www $(DESTDIR)/etc/relay
	install -m 0755 $(BUILD)/relay.fcgi $(BUILD)/relay-admin $(DESTDIR)$(PREFIX)/bin/
	cp -R www/. $(DESTDIR)$(PREFIX)/share/relay/www/
	install -m 0644 relay.ini $(DESTDIR)/etc/relay/relay.ini.example

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
