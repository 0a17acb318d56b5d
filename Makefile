# Relay — build, run and test.  See README.md.
#
#   make            build build/relay.fcgi and build/relay-admin
#   make run        install what is missing, build, init the store, serve on :9879
#                   behind FRONT=caddy|nginx|apache-proxy-fcgi
#   make test       install what is missing, build, run unit + end-to-end tests
#                   (the end-to-end suite once behind every front)
#   make test-e2e   the end-to-end suite: behind every front, or FRONT=… only
#   make asan       unit tests under AddressSanitizer + UBSan
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

.PHONY: all deps deps-test run test test-unit test-e2e asan fuzz bench check install uninstall clean

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

# The one unit test of the FastCGI side (fcgi/ is not in the library).
$(BUILD)/tests/t_params: $(call obj,tests/unit/t_params.c fcgi/params.c) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

deps:
	@deploy/install-deps.sh --front "$(FRONT)"

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
	@RELAY_FRONTS="$(E2E_FRONTS)" tests/run.sh "$(BUILD)" e2e

unit-bins: $(UNIT_BIN)

asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
		SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all unit-bins
	@ASAN_OPTIONS=detect_leaks=1 tests/run.sh build-asan unit

# libFuzzer targets (clang), each run for FUZZ_SECONDS on its seed corpus.
FUZZ_SECONDS ?= 30
FUZZ_TARGETS := sse openai providers config params
FUZZ_SRC := engine/sse.c engine/frame.c engine/prov_common.c engine/prov_openai.c \
	engine/prov_anthropic.c engine/prov_gemini.c engine/prov_ollama.c engine/policy.c \
	engine/config.c engine/pricing.c engine/route.c fcgi/params.c \
	store/base/rl_buf.c store/base/rl_err.c store/base/rl_log.c store/base/rl_pool.c
fuzz: deps
	@mkdir -p build-fuzz
	@for t in $(FUZZ_TARGETS); do \
		clang -std=c11 -D_GNU_SOURCE -g -O1 -I. $(PKG_CFLAGS) -fsanitize=fuzzer,address,undefined \
			-o build-fuzz/fuzz_$$t tests/fuzz/fuzz_$$t.c $(FUZZ_SRC) -ljansson -linih -lm || exit 1; \
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

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
