# lxc-download: build, test, demo and install.
#
#   make build    static binary ./lxc-download (CGO_ENABLED=0, -trimpath, stripped)
#   make test     vet + the whole test suite (what .ci/run runs)
#   make demo     build, start a local demo image server, create a container rootfs
#   make install  binary to $(BINDIR), template shim to $(TEMPLATEDIR), man page
#   make man      check the man page against --help
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

PKG      := github.com/lxc/lxc-download
LDFLAGS  := -s -w -X $(PKG)/cmd.Version=$(VERSION) \
            -X $(PKG)/cmd.LocalStateDir=$(LOCALSTATEDIR) \
            -X $(PKG)/cmd.TemplateConfig=$(LXCSHARE)/config \
            -X $(PKG)/cmd.HookDir=$(LXCSHARE)/hooks
# Build tags of every build, test and the tests' own builds of the binary
# (hence GOFLAGS, exported). nethttpomithttp2 leaves out net/http's bundled
# HTTP/2 (370 KB of the 10 MiB budget of issue 6): an image download is one
# stream per connection, which HTTP/1.1 serves as well.
TAGS     ?= nethttpomithttp2
export GOFLAGS := $(strip $(GOFLAGS) -tags=$(TAGS))
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
DEMO     := $(CURDIR)/.demo

.PHONY: build test demo install man dist bench fuzz clean

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

install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(TEMPLATEDIR) $(DESTDIR)$(MANDIR)/man1
	install -m 0755 lxc-download $(DESTDIR)$(BINDIR)/lxc-download
	printf '#!/bin/sh\nexec %s "$$@"\n' '$(BINDIR)/lxc-download' > $(DESTDIR)$(TEMPLATEDIR)/lxc-download
	chmod 0755 $(DESTDIR)$(TEMPLATEDIR)/lxc-download
	install -m 0644 man/lxc-download.1 $(DESTDIR)$(MANDIR)/man1/lxc-download.1

man:
	$(GO) test -count=1 -run 'TestManPage' ./cmd/

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
# decoder and the extractor, then the comparison with the shell template's
# tools on the same input (ratios).
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
