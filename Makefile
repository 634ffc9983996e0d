# lxc-download: build, test, demo and install.
#
#   make build    static binary ./lxc-download (CGO_ENABLED=0, -trimpath, stripped)
#   make test     vet + the whole test suite (what .ci/run runs)
#   make demo     build, start a local demo image server, create a container rootfs
#   make install  binary to $(BINDIR), template shims (download, local) to
#                 $(TEMPLATEDIR) (LXC's own templates diverted or kept aside),
#                 man page, completions
#   make uninstall  undo make install, putting LXC's template back
#   make man      generate the man page and completions from the definitions
#   make dist     static binaries for every architecture, with SHA256SUMS
#   make bench    benchmarks (see README)

GO          ?= go
VERSION     ?= 0.1.0
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
# LXC's own paths; they are also looked up at run time.
LXCSHARE    ?= /usr/share/lxc
TEMPLATEDIR ?= $(LXCSHARE)/templates
LOCALSTATEDIR ?= /var

# Shell completions, where bash-completion, zsh and fish look for them.
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
# LXC's templates that make install replaces with a shim running this
# binary: download, and local (whose shim runs "lxc-download local").
# TEMPLATES=download keeps LXC's own lxc-local.
TEMPLATES ?= download local
# Where dpkg-divert exists and DESTDIR is empty, LXC's own templates are
# diverted (dpkg then puts updates of them beside, not over, the shim);
# otherwise kept beside as .lxc-NAME.distrib. DIVERT= turns diversion off.
DIVERT ?= $(if $(DESTDIR),,$(shell command -v dpkg-divert 2>/dev/null))
SHIM_MARK := lxc-download shim, written by make install
# The source revision, for `lxc-download version`.
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)

PKG      := github.com/lxc/lxc-download
LDFLAGS  := -s -w -X $(PKG)/cmd.Version=$(VERSION) -X $(PKG)/cmd.Commit=$(COMMIT) \
            -X $(PKG)/cmd.LocalStateDir=$(LOCALSTATEDIR) \
            -X $(PKG)/cmd.TemplateConfig=$(LXCSHARE)/config \
            -X $(PKG)/cmd.HookDir=$(LXCSHARE)/hooks
# Build tags of every build, test and the tests' own builds of the binary
# (hence GOFLAGS, exported). nethttpomithttp2 leaves out net/http's bundled
# HTTP/2 (370 KB): an image download is one stream per connection, which
# HTTP/1.1 serves as well. urfave_cli_no_docs leaves out urfave/cli's man
# and markdown writers and the markdown packages they import (65 KB and
# their start-up); man/gen writes the man page.
TAGS     ?= nethttpomithttp2,urfave_cli_no_docs
export GOFLAGS := $(strip $(GOFLAGS) -tags=$(TAGS))
# -trimpath and -buildvcs=false make a build of one commit the same bytes
# wherever it is checked out (a clone, a worktree, a tarball with
# COMMIT=...); the commit is in LDFLAGS.
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -buildvcs=false -ldflags '$(LDFLAGS)'
DEMO     := $(CURDIR)/.demo

.PHONY: build test demo install uninstall man dist bench fuzz clean

build:
	$(GOBUILD) -o lxc-download .

test:
	$(GO) vet ./...
	CGO_ENABLED=0 $(GO) test -count=1 ./...

demo: build
	@rm -rf $(DEMO) && mkdir -p $(DEMO)/c1/rootfs
	@$(GO) build -o $(DEMO)/demoserver ./fetch/fetchtest/demoserver
	@$(DEMO)/demoserver -env $(DEMO)/env & echo $$! > $(DEMO)/server.pid; \
	  for i in $$(seq 100); do [ -s $(DEMO)/env ] && break; sleep 0.1; done; \
	  set -a; . $(DEMO)/env; set +a; \
	  printf 'lxc.net.0.type = empty\nlxc.rootfs.path = dir:$(DEMO)/c1/rootfs\n' > $(DEMO)/c1/config; \
	  echo "== ./lxc-download --list --server $$LXC_DOWNLOAD_SERVER --keyring $$LXC_DOWNLOAD_KEYRING"; \
	  LXC_CACHE_PATH=$(DEMO)/cache ./lxc-download --list --server $$LXC_DOWNLOAD_SERVER --keyring $$LXC_DOWNLOAD_KEYRING; \
	  echo "== ./lxc-download --name c1 --path $(DEMO)/c1 --rootfs $(DEMO)/c1/rootfs -d debian -r bookworm -a amd64 ..."; \
	  LXC_CACHE_PATH=$(DEMO)/cache ./lxc-download --server $$LXC_DOWNLOAD_SERVER --keyring $$LXC_DOWNLOAD_KEYRING \
	    --name c1 --path $(DEMO)/c1 --rootfs $(DEMO)/c1/rootfs -d debian -r bookworm -a amd64; rc=$$?; \
	  kill $$(cat $(DEMO)/server.pid); \
	  if [ $$rc -eq 0 ]; then echo; echo "== $(DEMO)/c1/config"; cat $(DEMO)/c1/config; \
	    echo "== $(DEMO)/c1/rootfs"; ls -l $(DEMO)/c1/rootfs; fi; exit $$rc

# The shim of template lxc-NAME runs the binary (as "lxc-download NAME" for
# the other templates): a script rather than a link, so that the binary
# finds LXC's directories from BINDIR, and any /bin/sh (dash, busybox) runs
# it. LXC's own template is diverted or kept aside first, unless it is
# already a shim.
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(TEMPLATEDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) $(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 lxc-download $(DESTDIR)$(BINDIR)/lxc-download
	install -m 0644 man/lxc-download.1 $(DESTDIR)$(MANDIR)/man1/lxc-download.1
	install -m 0644 man/completion/lxc-download.bash $(DESTDIR)$(BASHCOMPDIR)/lxc-download
	install -m 0644 man/completion/_lxc-download $(DESTDIR)$(ZSHCOMPDIR)/_lxc-download
	install -m 0644 man/completion/lxc-download.fish $(DESTDIR)$(FISHCOMPDIR)/lxc-download.fish
	@set -e; for name in $(TEMPLATES); do \
	  t=$(TEMPLATEDIR)/lxc-$$name; keep=$(TEMPLATEDIR)/.lxc-$$name.distrib; \
	  args=""; [ $$name = download ] || args=" $$name"; \
	  if ! grep -qs '$(SHIM_MARK)' $(DESTDIR)$$t; then \
	    if [ -n '$(DIVERT)' ]; then \
	      $(DIVERT) --rename --divert $$keep --add $$t; \
	    elif [ -e $(DESTDIR)$$t ]; then \
	      echo "LXC's $$t is kept as $$keep"; mv -f $(DESTDIR)$$t $(DESTDIR)$$keep; \
	    fi; \
	  fi; \
	  printf '#!/bin/sh\n# %s\nexec %s%s "$$@"\n' '$(SHIM_MARK)' '$(BINDIR)/lxc-download' "$$args" > $(DESTDIR)$$t.tmp; \
	  chmod 0755 $(DESTDIR)$$t.tmp; mv -f $(DESTDIR)$$t.tmp $(DESTDIR)$$t; \
	done

# Removes what install wrote (not the directories) and puts LXC's templates
# back where they were diverted or kept aside.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/lxc-download $(DESTDIR)$(MANDIR)/man1/lxc-download.1 \
	  $(DESTDIR)$(BASHCOMPDIR)/lxc-download $(DESTDIR)$(ZSHCOMPDIR)/_lxc-download \
	  $(DESTDIR)$(FISHCOMPDIR)/lxc-download.fish
	@set -e; for name in download local; do \
	  t=$(TEMPLATEDIR)/lxc-$$name; keep=$(TEMPLATEDIR)/.lxc-$$name.distrib; \
	  if grep -qs '$(SHIM_MARK)' $(DESTDIR)$$t; then rm -f $(DESTDIR)$$t; fi; \
	  if [ -n '$(DIVERT)' ] && [ -n "$$($(DIVERT) --listpackage $$t)" ]; then \
	    $(DIVERT) --rename --remove $$t; \
	  elif [ -e $(DESTDIR)$$keep ] && [ ! -e $(DESTDIR)$$t ]; then \
	    echo "LXC's $$t is restored"; mv $(DESTDIR)$$keep $(DESTDIR)$$t; \
	  fi; \
	done

# The man page and the completions, from the command definitions (a test
# fails while the committed ones are stale).
man:
	$(GO) generate ./man

# Static binaries for every architecture the image server builds for, named
# lxc-download-ARCH (the image server's architecture names), with SHA256SUMS.
# mips and mipsle use soft float: most MIPS routers have no FPU.
DIST_ARCHES := amd64:amd64: arm64:arm64: armhf:arm:GOARM=7 armel:arm:GOARM=5 \
               i386:386: ppc64le:ppc64le: s390x:s390x: riscv64:riscv64: \
               mips:mips:GOMIPS=softfloat mipsle:mipsle:GOMIPS=softfloat
dist:
	@rm -rf dist && mkdir -p dist
	@for spec in $(DIST_ARCHES); do \
	  name=$${spec%%:*}; rest=$${spec#*:}; goarch=$${rest%%:*}; extra=$${rest#*:}; \
	  echo "== dist/lxc-download-$$name"; \
	  env GOOS=linux GOARCH=$$goarch $$extra $(GOBUILD) -o dist/lxc-download-$$name . || exit 1; \
	done
	@cd dist && sha256sum lxc-download-* > SHA256SUMS && ls -l lxc-download-*

# Benchmarks: start-up against an empty Go program, Go benchmarks of the
# decoder and the extractor, then cmd/bench: the stages of a create timed
# one by one, and the comparison with the shell template on the same input
# (ratios, peak RSS): warm from the tarball, warm from the unpacked copy
# (copied on ext4, reflinked on xfs), cold at 20 MB/s, on loop-mounted
# filesystems made for the run. The input, cmd/bench/.cache/rootfs.tar.xz,
# is not in the repository: cmd/bench -prepare builds it once (a debootstrap
# minbase of bookworm as root with network, else a synthetic tree of the
# same size) and later runs reuse it.
bench:
	$(MAKE) build
	$(GO) test -run '^$$' -bench Startup -benchtime 200x -count 1 ./cmd/
	$(GO) run ./cmd/bench -prepare
	LXC_DOWNLOAD_BENCH_INPUT=$(CURDIR)/cmd/bench/.cache/rootfs.tar.xz \
	  $(GO) test -run '^$$' -bench . -benchtime 1x -count 1 ./cache/...
	$(GO) run ./cmd/bench $(BENCHFLAGS)

# Run every fuzz target for FUZZTIME each (default 30s).
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 20x $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf lxc-download dist $(DEMO)
