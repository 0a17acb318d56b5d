# Relay — build, run and test.  See README.md.
#
#   make            build build/relay.fcgi and build/relay-admin
#   make run        install what is missing, build, init the store, serve on :9879
#                   behind FRONT=caddy|nginx|apache-proxy-fcgi
#   make test       install what is missing, build, run unit + end-to-end tests
#                   (the end-to-end suite once behind every front)
#   make test-e2e   the end-to-end suite: behind every front, or FRONT=… only
#   make asan       unit tests and the end-to-end suite behind Caddy, built
#                   with AddressSanitizer + UBSan (leaks checked)
#   make fuzz       every libFuzzer target for FUZZ_SECONDS (default 30)
#   make bench      the benchmarks in tests/bench/ (figures, not pass/fail;
#                   BENCH=NAME for one, BENCH_ARGS for its options)
#   make check      formatting and banned functions

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
RELAY_INI ?= relay.ini
FRONT    ?= caddy
# make test-e2e FRONT=x runs behind x only; without FRONT, behind every front.
E2E_FRONTS := $(if $(filter command line environment,$(origin FRONT)),$(FRONT))

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
LDLIBS   := $(PKG_LIBS) -ldb -lpthread -lm

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

.PHONY: all deps deps-test run test test-unit test-e2e asan fuzz fuzz-bins bench bench-bins check install uninstall clean

all: $(BUILD)/relay.fcgi $(BUILD)/relay-admin

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The commit, when built from a git checkout, for rl_version() only.
GIT_REV := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
$(BUILD)/obj/store/base/rl_version.o: CFLAGS += $(if $(GIT_REV),-DRELAY_GIT_REV='"$(GIT_REV)"')
$(BUILD)/obj/store/base/rl_version.o: $(wildcard .git/HEAD .git/refs/heads/*)

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

# The unit tests of the FastCGI side (fcgi/ is not in the library).
$(BUILD)/tests/t_params: $(call obj,tests/unit/t_params.c fcgi/params.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/tests/t_body: $(call obj,tests/unit/t_body.c fcgi/body.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The allocation-failure tests (t_oom_prov, t_oom_store): our code's
# allocations reach their counting allocator through --wrap (jansson's and
# libdb's through their hooks), and json_loadb counts as one allocation (see
# tests/unit/oom_inject.h). One pattern: a new t_oom_*.c gets the same link.
OOM_WRAP := -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=strdup \
	-Wl,--wrap=strndup,--wrap=realpath,--wrap=json_loadb
$(BUILD)/tests/t_oom_%: $(call obj,tests/unit/t_oom_%.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $(OOM_WRAP) -o $@ $^ $(LDLIBS)

# relay-admin's commands, run in-process (admin/ is not in the library).
$(BUILD)/tests/t_admin: $(call obj,tests/unit/t_admin.c $(filter-out admin/main.c,$(ADMIN_SRC))) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@deploy/install-deps.sh --front "$(FRONT)"

deps-test:
	@deploy/install-deps.sh --test

# Builds after the dependencies are present: pkg-config flags are computed at
# parse time, so the build runs in a fresh make once install-deps is done.
# exec: run.sh must be make's own child. Through `sh -c` alone, make's
# SIGTERM (which it forwards to its child) killed the shell and left run.sh,
# the pool and the front running; run.sh watches make for the rest. It runs
# the binaries of BUILD, the ones just built.
run: deps
	@$(MAKE) --no-print-directory all
	@RELAY_BUILD="$(BUILD)" exec deploy/run.sh "$(RELAY_INI)" "$(FRONT)"

test: deps-test
	@$(MAKE) --no-print-directory all unit-bins
	@tests/run.sh "$(BUILD)"

test-unit: deps
	@$(MAKE) --no-print-directory unit-bins
	@tests/run.sh "$(BUILD)" unit

test-e2e: deps-test
	@$(MAKE) --no-print-directory all
	@RELAY_FRONTS="$(E2E_FRONTS)" tests/run.sh "$(BUILD)" e2e

unit-bins: $(UNIT_BIN)

# ASan + UBSan build in build-asan/: the unit tests, then the end-to-end
# suite behind ASAN_FRONT (and the browser test) with that build's relay.fcgi
# and relay-admin. Reports go to build-asan/sanitizer/ (log_path: a worker's
# report would otherwise reach no test), and tests/run.sh fails the test that
# was running for each one. Leaks: every process that exits normally is
# checked (relay-admin, the pool, a managed relay.fcgi, the unit tests), and
# so is a worker that drained and freed its engine (RELAY_LEAK_CHECK, see
# fcgi/main.c); a worker that _exits with threads still busy, or is killed
# on purpose, is not: its memory is in use, not lost. tests/lsan.supp
# suppresses what Berkeley DB 5.3 abandons after a panic (recovery after a
# killed process), as t_store, t_store_procs and t_flight do.
# allocator_may_return_null: a request too big for the allocator gets NULL,
# as from glibc's malloc, which Relay answers with RL_NOMEM (t_base asks
# rl_palloc for ~2^63 bytes), instead of ASan's abort.
ASAN_FRONT ?= caddy
SAN_LOGS   := $(CURDIR)/build-asan/sanitizer
asan: deps-test
	@$(MAKE) --no-print-directory BUILD=build-asan \
		OPTFLAGS="-O1 -g -fno-omit-frame-pointer -DRELAY_LEAK_CHECK" \
		SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit-bins
	@rm -rf $(SAN_LOGS) && mkdir -p $(SAN_LOGS)
	@ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:log_path=$(SAN_LOGS)/asan \
		LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
		UBSAN_OPTIONS=print_stacktrace=1:log_path=$(SAN_LOGS)/ubsan \
		RELAY_SANITIZER_LOGS=$(SAN_LOGS) RELAY_FRONTS="$(ASAN_FRONT)" \
		tests/run.sh build-asan unit e2e

# libFuzzer targets (clang): every tests/fuzz/fuzz_NAME.c, each run for
# FUZZ_SECONDS on a copy of its seed corpus tests/fuzz/corpus/NAME (new
# inputs stay in build-fuzz/). Undefined behaviour stops the fuzzer like a
# crash (-fno-sanitize-recover); a crashing input is saved as
# build-fuzz/crash-NAME-*. Every target runs; the last line is
# "N passed, N failed" over the targets.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
# What the targets link: the parsers and what they call, without libdb,
# libcurl or OpenSSL (config.c needs retry.c's fallback checks, the
# adapters prov_canon.c's normalisations; the translators engine/xlate*.c,
# but not translate.c, which needs the engine; the forwarded writes' codec
# store/cluster_wire.c with the token records of store/token_rec.c).
FUZZ_SRC := engine/sse.c engine/frame.c engine/prov_common.c engine/prov_openai.c \
	engine/prov_anthropic.c engine/prov_gemini.c engine/prov_ollama.c engine/policy.c \
	engine/config.c engine/config_cluster.c engine/config_values.c engine/pricing.c engine/route.c fcgi/params.c \
	store/cluster_addr.c store/cluster_wire.c store/token_rec.c \
	store/base/rl_buf.c store/base/rl_err.c store/base/rl_log.c store/base/rl_pool.c \
	store/base/rl_hex.c engine/fuzzy.c engine/retry.c engine/prov_canon.c \
	$(wildcard engine/xlate*.c)
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -I. $(PKG_CFLAGS) $(FUZZ_SAN) -MMD -MP
FUZZ_OBJ    := $(patsubst %.c,build-fuzz/obj/%.o,$(FUZZ_SRC))

build-fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

.PRECIOUS: build-fuzz/obj/%.o
build-fuzz/fuzz_%: build-fuzz/obj/tests/fuzz/fuzz_%.o $(FUZZ_OBJ)
	clang $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ -ljansson -linih -lm

fuzz-bins: $(patsubst %,build-fuzz/fuzz_%,$(FUZZ_TARGETS))

fuzz: deps
	@$(MAKE) --no-print-directory fuzz-bins
	@p=0; f=0; for t in $(FUZZ_TARGETS); do \
		rm -rf build-fuzz/corpus-$$t && mkdir -p build-fuzz/corpus-$$t && \
		cp tests/fuzz/corpus/$$t/* build-fuzz/corpus-$$t/; \
		echo "# --- fuzz $$t for $(FUZZ_SECONDS) s"; \
		if build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			-artifact_prefix=build-fuzz/crash-$$t- \
			build-fuzz/corpus-$$t > build-fuzz/fuzz_$$t.log 2>&1; then \
			p=$$((p + 1)); echo "ok - fuzz $$t: $$(tail -1 build-fuzz/fuzz_$$t.log)"; \
		else \
			f=$$((f + 1)); tail -40 build-fuzz/fuzz_$$t.log; echo "not ok - fuzz $$t"; \
		fi; \
	done; echo "$$p passed, $$f failed"; [ $$f -eq 0 ]

# The benchmarks' own programs (tests/bench/*.c): bench-baseline, the
# minimal libfcgi responder Relay's hit is compared against, and bench-fill,
# which grows a store to N entries (throughput.mjs), bench-fuzzy, the
# fuzzy index's lookup cost as the store grows (fuzzy_lookup.mjs), and
# bench-cluster, a reservation's cost in a group of hosts (cluster_reserve.mjs).
BENCH_BIN := $(BUILD)/bench-baseline $(BUILD)/bench-fill $(BUILD)/bench-fuzzy $(BUILD)/bench-cluster
$(BUILD)/bench-baseline: $(call obj,tests/bench/baseline.c)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench-fill: $(call obj,tests/bench/fill.c) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench-fuzzy: $(call obj,tests/bench/fuzzy.c) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/bench-cluster: $(call obj,tests/bench/cluster.c) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
bench-bins: $(BENCH_BIN)

# Benchmarks (not part of make test): numbers, not pass/fail; results in
# tests/out/. BENCH=NAME runs one (tests/bench/NAME.mjs), BENCH_ARGS are
# passed to it (e.g. BENCH=throughput BENCH_ARGS='--front caddy --only hit').
bench: deps-test
	@$(MAKE) --no-print-directory all bench-bins
	@tests/bench/run.sh "$(BUILD)" $(BENCH) $(if $(BENCH_ARGS),-- $(BENCH_ARGS))

# The checker's own test first (each rule fires, and only where it should),
# then the rules and formatting on the tree; both always run.
check:
	@st=0; out=$$(tests/check_test.sh 2>&1) || { printf '%s\n' "$$out" | grep -v '^ok '; \
		echo "check: tests/check_test.sh failed: the checker itself is wrong"; st=1; }; \
		tests/check.sh || st=1; exit $$st

# Installs Relay as a systemd service, the Debian way: PREFIX=/usr for a
# package (default /usr/local), DESTDIR to stage. Binaries in BINDIR; the
# dashboard, the front configs (examples) and the shipped config in DATADIR;
# the unit (its paths set to BINDIR and SYSCONFDIR) and the relay user
# (sysusers.d). SYSCONFDIR/relay/relay.ini is installed only when absent: a
# changed config is never overwritten. Its store, key file and socket are in
# the service's /var/lib/relay and /run/relay; the log goes to the journal.
# Into the live system (no DESTDIR) as root it also creates the user and
# reloads systemd. `make uninstall` removes all that but the config, the
# store and the user.
BINDIR         ?= $(PREFIX)/bin
DATADIR        ?= $(PREFIX)/share/relay
SYSCONFDIR     ?= /etc
SYSTEMDUNITDIR ?= /lib/systemd/system
SYSUSERSDIR    ?= /usr/lib/sysusers.d
INSTALL_EXAMPLES := $(filter-out deploy/systemd/,$(wildcard deploy/*/))
INSTALL_PATHS  := sed -e 's|/usr/bin/relay|$(BINDIR)/relay|g' -e 's|/etc/relay/|$(SYSCONFDIR)/relay/|g'

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR) $(DESTDIR)$(SYSCONFDIR)/relay \
		$(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	install -m 0755 $(BUILD)/relay.fcgi $(BUILD)/relay-admin $(DESTDIR)$(BINDIR)/
	cd www && find . -type f | sed 's|^\./||' | while IFS= read -r f; do \
		install -D -m 0644 "$$f" "$(DESTDIR)$(DATADIR)/www/$$f" || exit 1; done
	for d in $(INSTALL_EXAMPLES); do (cd $$d && find . -type f | sed 's|^\./||') | \
		while IFS= read -r f; do m=0644; [ -x "$$d$$f" ] && m=0755; \
		install -D -m $$m "$$d$$f" "$(DESTDIR)$(DATADIR)/$${d%/}/$$f" || exit 1; done || exit 1; done
	sed -f deploy/systemd/relay.ini.sed relay.ini | $(INSTALL_PATHS) > $(BUILD)/relay.ini.service
	install -m 0644 $(BUILD)/relay.ini.service $(DESTDIR)$(DATADIR)/relay.ini
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/relay/relay.ini ]; then \
		echo "install: kept $(DESTDIR)$(SYSCONFDIR)/relay/relay.ini; the shipped one is $(DATADIR)/relay.ini"; \
	else \
		echo "install -m 0644 $(BUILD)/relay.ini.service $(DESTDIR)$(SYSCONFDIR)/relay/relay.ini"; \
		install -m 0644 $(BUILD)/relay.ini.service $(DESTDIR)$(SYSCONFDIR)/relay/relay.ini; \
	fi
	$(INSTALL_PATHS) deploy/systemd/relay.service > $(BUILD)/relay.service
	install -m 0644 $(BUILD)/relay.service $(DESTDIR)$(SYSTEMDUNITDIR)/relay.service
	install -m 0644 deploy/systemd/relay.sysusers $(DESTDIR)$(SYSUSERSDIR)/relay.conf
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		systemd-sysusers $(SYSUSERSDIR)/relay.conf; \
		if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
		echo "install: now systemctl enable --now relay (config $(SYSCONFDIR)/relay/relay.ini)"; \
	fi

uninstall:
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemctl disable --now relay.service || true; fi
	rm -f $(DESTDIR)$(BINDIR)/relay.fcgi $(DESTDIR)$(BINDIR)/relay-admin
	rm -rf $(DESTDIR)$(DATADIR)/www $(DESTDIR)$(DATADIR)/deploy
	rm -f $(DESTDIR)$(DATADIR)/relay.ini
	rmdir $(DESTDIR)$(DATADIR) 2>/dev/null || true
	rm -f $(DESTDIR)$(SYSTEMDUNITDIR)/relay.service $(DESTDIR)$(SYSUSERSDIR)/relay.conf
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "uninstall: kept $(DESTDIR)$(SYSCONFDIR)/relay/relay.ini, the store in /var/lib/relay and the relay user"

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD)/obj build-fuzz/obj -name '*.d' 2>/dev/null)
