# Build and install quotafs where a distribution would put it.
#   make                     cargo build --release
#   make install             the binary, the man pages, the systemd unit, an example config
#   make install PREFIX=/usr DESTDIR=/tmp/pkg   (packaging; BIN=path installs another build)
#   make uninstall           removes what install put there (never /etc/quotafs.toml)

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/quotafs
UNITDIR    ?= $(PREFIX)/lib/systemd/system
CARGO      ?= cargo
BIN        ?= target/release/quotafs
INSTALL    ?= install

.PHONY: all build install uninstall

all: build

build:
	$(CARGO) build --release

$(BIN):
	$(CARGO) build --release

install: $(BIN)
	$(INSTALL) -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/quotafs
	$(INSTALL) -D -m 0644 man/quotafs.8 $(DESTDIR)$(MANDIR)/man8/quotafs.8
	$(INSTALL) -D -m 0644 man/quotafs.toml.5 $(DESTDIR)$(MANDIR)/man5/quotafs.toml.5
	$(INSTALL) -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|^\(Exec[A-Za-z]*\)=/usr/local/bin/quotafs |\1=$(BINDIR)/quotafs |' fixtures/quotafs.service \
		> $(DESTDIR)$(UNITDIR)/quotafs.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/quotafs.service
	$(INSTALL) -D -m 0644 fixtures/quotafs.toml $(DESTDIR)$(DOCDIR)/quotafs.toml.example
	@echo "installed. Next: write /etc/quotafs.toml (see $(DOCDIR)/quotafs.toml.example), set"
	@echo "RequiresMountsFor= to your backing (systemctl edit quotafs), then systemctl enable --now quotafs"

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/quotafs $(DESTDIR)$(MANDIR)/man8/quotafs.8 \
		$(DESTDIR)$(MANDIR)/man5/quotafs.toml.5 $(DESTDIR)$(UNITDIR)/quotafs.service \
		$(DESTDIR)$(DOCDIR)/quotafs.toml.example
	-rmdir $(DESTDIR)$(DOCDIR) 2>/dev/null
