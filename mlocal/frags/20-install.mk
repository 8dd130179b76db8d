# Installing. starter-suid is setuid root only when installed by root; it is put in place
# with a rename, so a half-written setuid file never exists under its real name. Files in
# etc/ never overwrite what an admin has edited: the new version goes next to it as .new.
# etc/ mirrors $(sysconfdir): etc/kerr/seccomp.json installs as $(sysconfdir)/kerr/seccomp.json.
# $(localstatedir)/lib/kerr/mnt/session is where HPC mode mounts each container's session
# tmpfs, inside the container's own mount namespace (the directory stays empty on the host).
KERR_LIBEXEC := $(DESTDIR)$(LIBEXECDIR)/kerr/bin
KERR_ETC := $(DESTDIR)$(SYSCONFDIR)/kerr

.PHONY: install
install: all
	install -d -m 0755 $(DESTDIR)$(BINDIR) $(KERR_LIBEXEC) $(KERR_ETC)
	install -d -m 0755 $(DESTDIR)$(LOCALSTATEDIR)/lib/kerr/mnt/session
	install -m 0755 $(BUILDDIR)/kerr $(DESTDIR)$(BINDIR)/kerr
	install -m 0755 $(BUILDDIR)/kerr-runc $(DESTDIR)$(BINDIR)/kerr-runc
	install -m 0755 $(BUILDDIR)/starter $(KERR_LIBEXEC)/starter
ifneq ($(WITH_SUID),)
	@set -e; dst=$(KERR_LIBEXEC)/starter-suid; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "install -o root -g root -m 4755 $(BUILDDIR)/starter-suid $$dst"; \
		install -o root -g root -m 0700 $(BUILDDIR)/starter-suid $$dst.tmp; \
		chmod 4755 $$dst.tmp; \
		mv -f $$dst.tmp $$dst; \
	else \
		install -m 0755 $(BUILDDIR)/starter-suid $$dst; \
		echo "kerr: starter-suid installed without the setuid bit: setuid mode needs 'make install' as root"; \
	fi
endif
	@set -e; if [ -d $(SRCDIR)/etc ]; then cd $(SRCDIR)/etc; \
	find . -type f | sort | while read -r f; do \
		f=$${f#./}; dst=$(DESTDIR)$(SYSCONFDIR)/$$f; \
		install -d -m 0755 "$$(dirname "$$dst")"; \
		if [ ! -e "$$dst" ]; then \
			echo "install -m 0644 etc/$$f $$dst"; install -m 0644 "$$f" "$$dst"; \
		elif ! cmp -s "$$f" "$$dst"; then \
			install -m 0644 "$$f" "$$dst.new"; \
			echo "kerr: kept your $$dst; the new default is $$dst.new"; \
		fi; \
	done; fi
